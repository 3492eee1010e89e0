"""``face2anime serve``: the local web app (convert a photo; the blind rating survey)."""
