"""Preference-data generation for stage-1 training: contrastive prompting + judge filters."""

from langchain_pad.datagen.dataset import DatasetManifest, PairRecord, read_dataset
from langchain_pad.datagen.generate import GenerationSettings, generate_dataset
from langchain_pad.datagen.prompts import PromptItem, load_prompts

__all__ = [
    "DatasetManifest",
    "GenerationSettings",
    "PairRecord",
    "PromptItem",
    "generate_dataset",
    "load_prompts",
    "read_dataset",
]
