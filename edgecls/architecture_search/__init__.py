"""``edgecls search``: the most accurate model that meets latency and size limits on the target.

The space (:mod:`.space`), feasibility on the target (:mod:`.feasibility`), the study and its
trials (:mod:`.study`, :mod:`.trials`), the finalists through optimize (:mod:`.finalists`), and
the stages that run them in order (:mod:`.stages`). Above ``searching``: the finalists go
through the optimize search, and trials are timed with its Timer.
"""
