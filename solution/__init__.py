"""ABAW multimodal affect harness: EMI (Hume-Vidmimic2) and VA (Aff-Wild2) tracks."""
