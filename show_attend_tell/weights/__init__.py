"""Pretrained encoder weights: import from Keras (.h5) and PyTorch (.pth) files, store them
framework-neutrally (.npz), and put them into a captioner's parameters."""
