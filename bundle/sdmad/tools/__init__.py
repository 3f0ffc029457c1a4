"""Tooling around the runtime, never imported by it: the phantom data set, tiny-CLIP pretraining, the benchmark,
multi-seed experiments, the backbone probe and the network summary. Installed with the package, so the scripts
import it from a wheel as from a checkout."""
