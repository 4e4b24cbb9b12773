"""The serving side: run layout, job queue, worker processes, the shared generation model, finished evaluations."""
