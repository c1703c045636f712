"""Training: model building, fitting and the reports written after it."""
