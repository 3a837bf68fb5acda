"""talkingmem: memory-augmented talking-head generation (MCNet, MemFace) in JAX/Flax."""
