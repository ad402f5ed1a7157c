"""The Steer panel: explore which SAE features fire where, steer them by region and window, feature
icons, top images and the feature tables they are built from."""
