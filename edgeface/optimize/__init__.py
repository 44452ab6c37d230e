"""Make a trained model smaller without labels: self-distillation to the float model drives every
fine-tune (magnitude pruning, QAT, structured filter pruning, distinctiveness pruning)."""
