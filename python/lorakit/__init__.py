"""lorakit: train LoRA text classifiers; serve them natively from Rust, Python and Go with proven parity."""

__version__ = "0.1.0"
