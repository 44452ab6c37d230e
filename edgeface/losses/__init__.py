"""Face-embedding training losses: softmax CE, center loss, ArcFace/CosFace margin heads, distillation.

    head = make_head("arcface", num_classes, embedding_dim, scale=32, margin=0.5)
    logits = head(embeddings, labels, training=True)
    loss = softmax_cross_entropy(labels, logits)
    center = CenterLoss(num_classes, embedding_dim, alpha=0.5); loss += lam * center(embeddings, labels)
    center.update(embeddings, labels)               # moving-average step, not backprop
    loss += w * cosine_distill_loss(embeddings, teacher_embeddings)
"""
from edgeface.losses.center import CenterLoss
from edgeface.losses.distill import cosine_distill_loss, similarity_distill_loss
from edgeface.losses.margin import HEADS, ArcFaceHead, CosFaceHead, SoftmaxHead, make_head, softmax_cross_entropy

__all__ = ["CenterLoss", "cosine_distill_loss", "similarity_distill_loss", "HEADS", "ArcFaceHead", "CosFaceHead",
           "SoftmaxHead", "make_head", "softmax_cross_entropy"]
