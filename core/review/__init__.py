"""Case-review meetings: the cases a meeting presents, the reads the room records against the
model's, and the agreement statistics of its summary (:mod:`core.review.agreement`)."""
