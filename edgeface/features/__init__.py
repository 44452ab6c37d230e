"""Hand-crafted face descriptors (numpy only, TF-free): LPQ, PHOG and a plain LBP for comparison.

    lpq(img, win=7, grid=(4, 4))      local phase quantisation, 256-bin histogram per cell
    phog(img, bins=8, levels=2)       pyramid of gradient-orientation histograms, levels 0..L
    lbp(img, grid=(4, 4))             the plain 8-neighbour LBP histogram (baseline, blur test)
"""
from edgeface.features.lpq import lbp, lbp_codes, lpq, lpq_codes
from edgeface.features.phog import phog, phog_length

__all__ = ["lbp", "lbp_codes", "lpq", "lpq_codes", "phog", "phog_length"]
