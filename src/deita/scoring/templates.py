"""The exact prompts the published Deita scorers were trained on (DEITA.md §2); every byte matters."""

from __future__ import annotations

COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
    "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)
SCORE_TYPES = ("complexity", "quality")
SCORE_FIELDS = {"complexity": "complexity_scores", "quality": "quality_scores"}


def render(score_type: str, instruction: str, response: str = "") -> str:
    """The scorer prompt for one turn; complexity reads the instruction only."""
    if score_type == "complexity":
        return COMPLEXITY_TEMPLATE.format(instruction=instruction)
    if score_type == "quality":
        return QUALITY_TEMPLATE.format(instruction=instruction, output=response)
    raise ValueError(f"unknown score type '{score_type}' (choose {', '.join(SCORE_TYPES)})")
