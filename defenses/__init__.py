"""robench.defenses: plugins, one file each; the registry imports every non-underscore module here."""
