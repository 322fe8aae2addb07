"""The DARTS cell search space: candidate ops, genotypes, the supernet and the evaluation network."""
