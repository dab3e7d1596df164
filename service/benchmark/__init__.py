"""`ranker bench`: stage floors measured in process, and the whole HTTP call under load."""
