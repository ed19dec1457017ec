"""Attribution maps (Captum) and their rendering as overlays."""
