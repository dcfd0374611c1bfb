"""The shipped generator (weights in safetensors, card in JSON); installed as brainseg_gui.shipped_model."""
