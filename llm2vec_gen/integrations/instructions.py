"""Evaluation instructions of LLM2Vec-Gen.

LLM2Vec-Gen embeds the answer the model would give, so an instruction reads as a request for that
answer: a retrieval query asks for "a passage that best answers this question", a document asks to
be summarised. The paper's evaluation joins ``instruction.strip() + " " + text.strip()``; the
instructions here keep a trailing space so that ``instruction + text.strip()`` is the same string.

``TASK_INSTRUCTIONS`` holds the per-task instructions the paper used on MTEB(eng, v2);
``TYPE_INSTRUCTIONS`` the defaults by mteb task type for any other task; ``PASSAGE_INSTRUCTION`` is
used for every corpus document (retrieval and reranking).
"""

from __future__ import annotations

QUERY_INSTRUCTION = "Generate a passage that best answers this question: "
PASSAGE_INSTRUCTION = "Summarize the following passage: "
STS_INSTRUCTION = "Generate text that is semantically similar to this text: "

TYPE_INSTRUCTIONS: dict[str, str] = {
    "Retrieval": QUERY_INSTRUCTION,
    "InstructionRetrieval": "Generate a relevant document that answers this query: ",
    "InstructionReranking": "Generate a relevant document that answers this query: ",
    "Reranking": QUERY_INSTRUCTION,
    "STS": STS_INSTRUCTION,
    "PairClassification": STS_INSTRUCTION,
    "BitextMining": STS_INSTRUCTION,
    "Classification": "Classify the topic, intent or sentiment of this text: ",
    "MultilabelClassification": "Classify the topic, intent or sentiment of this text: ",
    "Regression": "Classify the topic, intent or sentiment of this text: ",
    "Clustering": "Generate a text on the same topic as this text: ",
    "Summarization": "Generate a concise and faithful summary of this article: ",
}

_ONLY_TEXT = " Just output the text, no other text or description: "

TASK_INSTRUCTIONS: dict[str, str] = {
    "ArguAna": "Generate text that refutes this claim." + _ONLY_TEXT,
    "SciFact": "Generate text that supports or refutes this claim." + _ONLY_TEXT,
    "NFCorpus": "Generate text that best answers this question." + _ONLY_TEXT,
    "FEVERHardNegatives": "Generate a Wikipedia-style text that supports or refutes this claim." + _ONLY_TEXT,
    "FiQA2018": "Generate a detailed reply that answers this financial question."
    " Just output the reply text, no other text or description: ",
    "TRECCOVID": "Generate a scientific text that answers this COVID-19 query." + _ONLY_TEXT,
    "ClimateFEVERHardNegatives": "Generate a Wikipedia-style passage that supports or refutes this climate"
    " change claim. Just output the passage text, no other text or description: ",
    "HotpotQAHardNegatives": "Generate a Wikipedia-style passage that helps answer this multi-hop question."
    " Just output the passage text, no other text or description: ",
    "SCIDOCS": "Generate an abstract of a scientific paper in a passage that could be cited by this paper."
    " Just output the abstract text, no other text or description: ",
    "Touche2020Retrieval.v3": "Generate a detailed and persuasive argument that answers this question."
    " Just output the argument text, no other text or description: ",
    "CQADupstackGamingRetrieval": "Generate a detailed question description similar to this gaming"
    " question. Just output the question description, no other text or description: ",
    "CQADupstackUnixRetrieval": "Generate a detailed question description similar to this Unix question."
    " Just output the question description, no other text or description: ",
    "AskUbuntuDupQuestions": "Generate a duplicate question about the same issue as this Ubuntu question: ",
    "MindSmallReranking": "Generate a short news article relevant to this news title: ",
    "SprintDuplicateQuestions": "Generate a duplicate customer question expressing the same issue: ",
    "TwitterSemEval2015": "Generate a tweet that is semantically similar to this tweet: ",
    "TwitterURLCorpus": "Generate a tweet that discusses the same linked content/topic as this tweet: ",
    "BIOSSES": "Generate a biomedical sentence that is semantically similar to this sentence: ",
    "SICK-R": "Generate a sentence that is semantically similar to this sentence: ",
    "Banking77Classification": "Given a online banking query, find the corresponding intents: ",
    "EmotionClassification": "Classify the emotion expressed in the given Twitter message into one of the"
    " six emotions: anger, fear, joy, love, sadness, and surprise: ",
    "AmazonCounterfactualClassification": "Classify a given Amazon customer review text as either"
    " counterfactual or notcounterfactual: ",
    "ImdbClassification": "Classify the sentiment expressed in the given movie review text from the IMDB"
    " dataset: ",
    "MTOPDomainClassification": "Classify the domain of this utterance (e.g., alarms, weather, music,"
    " navigation): ",
    "MassiveIntentClassification": "Classify the user's intent expressed in this utterance: ",
    "MassiveScenarioClassification": "Classify the scenario/domain of this utterance: ",
    "ToxicConversationsClassification": "Classify whether the given comment is toxic or non-toxic: ",
    "TweetSentimentExtractionClassification": "Classify the sentiment of the given tweet as positive,"
    " negative, or neutral: ",
    "ArXivHierarchicalClusteringP2P": "Generate a paper abstract on the same research topic as this arXiv"
    " paper: ",
    "ArXivHierarchicalClusteringS2S": "Generate a section paragraph that belongs to the same paper/topic as"
    " this section: ",
    "BiorxivClusteringP2P.v2": "Generate a biomedical abstract on the same topic as this bioRxiv paper: ",
    "MedrxivClusteringP2P.v2": "Generate a clinical abstract on the same topic as this medRxiv paper: ",
    "MedrxivClusteringS2S.v2": "Generate a section paragraph from the same clinical study/topic as this"
    " section: ",
    "StackExchangeClustering.v2": "Generate a StackExchange post on the same topic as this one: ",
    "StackExchangeClusteringP2P.v2": "Generate a StackExchange post that belongs to the same topic as this"
    " post: ",
    "TwentyNewsgroupsClustering.v2": "Generate a message that belongs to the same newsgroup category as"
    " this post: ",
    "SummEvalSummarization.v2": "Generate a concise and faithful summary of this article: ",
}


PROMPTS: dict[str, str] = {
    "query": QUERY_INSTRUCTION,
    "document": PASSAGE_INSTRUCTION,
    "sts": STS_INSTRUCTION,
    "classification": TYPE_INSTRUCTIONS["Classification"],
    "clustering": TYPE_INSTRUCTIONS["Clustering"],
}
"""Named presets (the server's ``prompt_name``): retrieval queries, documents, STS, classification,
clustering."""


def instruction_for(task_name: str | None, task_type: str | None, is_passage: bool = False) -> str:
    """The instruction for one side of a task: the passage one for documents, else per task, else per type.

    Falls back to the STS instruction for an unknown task of an unknown type.
    """
    if is_passage:
        return PASSAGE_INSTRUCTION
    if task_name in TASK_INSTRUCTIONS:
        return TASK_INSTRUCTIONS[task_name]
    return TYPE_INSTRUCTIONS.get(task_type or "", STS_INSTRUCTION)
