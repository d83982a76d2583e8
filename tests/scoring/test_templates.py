from deita.scoring.templates import render


def test_complexity_prompt_bytes():
    assert render("complexity", "Q?") == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: Q?  \n##Complexity: "
    )


def test_quality_prompt_bytes():
    assert render("quality", "Q?", "A.") == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\nQ?\n#Response#:\nA. \n##Quality: "
    )
