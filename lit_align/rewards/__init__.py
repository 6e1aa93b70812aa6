"""Reward callables for online objectives, and scoring with trained reward models."""
