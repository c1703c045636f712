"""Looking into trained models: Grad-CAM heatmaps, test-time augmentation and ensembles."""
