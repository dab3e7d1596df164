"""Model comparison on the real relevance data: baselines, ablations, intervals, report."""
