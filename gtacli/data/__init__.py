"""Data: HumanData files, crops and normalisation, datasets for evaluation and training.

Import submodules directly (`from gtacli.data.human_data import HumanData`)."""
