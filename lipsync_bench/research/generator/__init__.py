"""The stabilized generator (Yaman et al., ECCV 2024): silent-lip generator G_S, lip generator G_L,
stabilized synchronization loss, adaptive triplet loss; training (``train-generator``,
``train-silent``) and inference (``generate``)."""
