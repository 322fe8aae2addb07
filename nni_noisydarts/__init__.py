"""NoisyDARTS for NNI 3.0."""
