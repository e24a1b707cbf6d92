"""One router per resource: generate, segment, models, jobs, health."""
