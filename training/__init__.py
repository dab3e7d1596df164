"""Offline training: data adapters, behaviour simulation, labels, sampling, MMoE, export."""
