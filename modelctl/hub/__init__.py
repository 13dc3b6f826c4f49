"""The Hugging Face Hub: client, answers, refusals, revision resolution, the sync Source."""
