"""Running one pipeline call: the cache and device policy, seeds and steps, schedulers, speed-ups, LoRA."""
