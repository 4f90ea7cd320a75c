"""The serving Pusher: integer versions, atomic publish and ``models.config`` for TF Serving."""
