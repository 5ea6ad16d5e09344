"""What every layer uses: the settings, error wording, image files, objects that survive a fork."""
