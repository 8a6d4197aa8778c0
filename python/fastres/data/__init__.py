"""The data layer: ImageNet layout, reference preprocessing, the preprocessed store and the
embedded synthetic default."""
