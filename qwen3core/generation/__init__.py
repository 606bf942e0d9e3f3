"""Generation: small pure step functions, a sampler, and the loops built from them."""
