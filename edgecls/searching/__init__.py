"""Searches that choose among models on the validation split: ``edgecls optimize``'s search over
compressed variants (candidates, their measurement and the leaderboard)."""
