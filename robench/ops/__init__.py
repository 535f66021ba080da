"""Building blocks that plugins share: the TV-AR motion model (:mod:`.motion`), transfer-attack
operations (:mod:`.transfer`), and the Bayesian post-training machinery (:mod:`.posterior` with its
samplers in :mod:`.samplers` and its artefact cache in :mod:`.artifacts`)."""
