"""Drop-in gateway pieces: an nginx forward-auth config and a sample model API behind it."""
