"""Unlabelled training queries written by this project (no external source, free to redistribute).

``generate_queries`` crosses a hand-written list of topics (science, everyday life, technology,
history, arts, health, work) with question templates that read for any noun phrase, shuffles the
products with a fixed seed and drops any query that equals or is contained in an evaluation text
(``human_eval`` and the bundled retrieval / STS sets), so training never sees what is evaluated.

    python -m llm2vec_gen.queries 2400 queries.jsonl     # {"id": "q0000", "query": ...} per line
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterable
from pathlib import Path

TOPICS = """
photosynthesis|plate tectonics|black holes|the water cycle|volcanoes|earthquakes|ocean currents|
climate change|the greenhouse effect|the ozone layer|rainbows|lightning|hurricanes|glaciers|deserts|
coral reefs|rainforests|bird migration|honey bees|the human heart|the immune system|DNA replication|
evolution by natural selection|genetic mutations|antibiotics|viruses|bacteria in the gut|sleep|
dreams|memory formation|the nervous system|muscle growth|vitamins|dietary fibre|caffeine|hydration|
blood pressure|allergies|the common cold|vaccination campaigns|meditation|stress|running for fitness|
stretching|yoga|posture at a desk|the periodic table|chemical bonds|acids and bases|electric circuits|
magnetism|gravity|Newton's laws of motion|the speed of light|quantum mechanics|nuclear fusion|
nuclear fission|solar panels|wind turbines|electric cars|lithium batteries|hydrogen fuel|recycling|
composting|plastic pollution|air quality|the Moon landing|the planet Mars|Jupiter's moons|comets|
telescopes|satellites|the International Space Station|the Big Bang|dark matter|exoplanets|
prime numbers|fractions|probability|statistics|algebra|geometry|calculus|the Pythagorean theorem|
compound interest|inflation|supply and demand|stock markets|budgeting|credit scores|mortgages|
saving for retirement|small businesses|marketing|negotiation|job interviews|writing a resume|
public speaking|time management|remote work|team meetings|leadership|giving feedback|
learning a new language|reading habits|note taking|online courses|exam preparation|critical thinking|
the printing press|the Roman Empire|ancient Egypt|the Silk Road|the Renaissance|
the Industrial Revolution|the French Revolution|the Cold War|the invention of the telephone|
the history of the internet|medieval castles|the Vikings|the Olympic Games|democracy|
human rights|the United Nations|world religions|philosophy of mind|ethics|logic puzzles|
classical music|jazz|learning the guitar|painting with watercolours|photography|film editing|
poetry|short stories|writing a novel|theatre|dance|architecture|modern art|museums|
cooking pasta|baking bread|making coffee|growing tomatoes|houseplants|keeping chickens|
caring for a dog|training a cat|aquariums|gardening in small spaces|home insulation|
fixing a leaky tap|painting a room|woodworking|knitting|cycling to work|camping|hiking safety|
travelling on a budget|packing for a trip|jet lag|learning to swim|chess|board games|video games|
football|basketball|tennis|marathon training|computer programming|the Python language|
databases|spreadsheets|cloud computing|computer networks|encryption|passwords|phishing|
open source software|version control|machine learning|neural networks|search engines|
recommendation systems|smartphones|3D printing|robots|self-driving cars|drones|
virtual reality|blockchains|email etiquette|social media|digital privacy|online shopping|
public transport|city planning|bridges|tunnels|skyscrapers|dams|water treatment|electric grids|
farming|irrigation|soil health|fishing|forestry|bees and pollination|weather forecasts|
tsunamis|wildfires|floods|first aid|fire safety|road safety|child development|parenting|
friendship|volunteering|moving house|minimalism|personal finance|charity|tea|chocolate|cheese|
olive oil|spices|fermentation|vegetarian diets|food labels|table manners|wedding planning|
birthdays|holidays in winter|the four seasons|tides and the Moon|maps|compasses|clocks|calendars
"""

TEMPLATES = (
    "Explain {t} in simple terms.",
    "Tell me about {t}.",
    "Give a short overview of {t}.",
    "What should a beginner know about {t}?",
    "What are common misconceptions about {t}?",
    "How would you explain {t} to a child?",
    "What is the history of {t}?",
    "What are the main ideas behind {t}?",
    "Write a short paragraph about {t}.",
    "What are some practical tips related to {t}?",
    "Why do people find {t} interesting?",
    "What are the benefits and drawbacks of {t}?",
)


def topics() -> list[str]:
    """The hand-written topic list (noun phrases), in file order without duplicates."""
    seen: dict[str, None] = {}
    for topic in TOPICS.replace("\n", "").split("|"):
        if topic.strip():
            seen.setdefault(topic.strip(), None)
    return list(seen)


def generate_queries(n: int, seed: int = 0, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` distinct queries (topic x template, shuffled by ``seed``); none equals or is contained
    in a text of ``exclude`` (compared lower-cased). ValueError when fewer than ``n`` remain."""
    banned = [e.strip().lower() for e in exclude if e.strip()]
    pool = [tpl.format(t=topic) for topic in topics() for tpl in TEMPLATES]
    random.Random(seed).shuffle(pool)
    kept = [q for q in pool if not any(q.lower() in text for text in banned)]
    if len(kept) < n:
        raise ValueError(f"only {len(kept)} queries can be generated, asked for {n}")
    return kept[:n]


def evaluation_texts() -> list[str]:
    """Every text the project evaluates on: Lee documents, WordSim-353 words, the bundled sets."""
    from llm2vec_gen.integrations import human_eval
    from llm2vec_gen.integrations.sample_data import SAMPLE_CORPUS, SAMPLE_QUERIES, SAMPLE_STS

    texts = list(human_eval.lee_documents()) + [w for a, b, _ in human_eval.wordsim353() for w in (a, b)]
    return (
        texts
        + list(SAMPLE_QUERIES.values())
        + list(SAMPLE_CORPUS.values())
        + [s for a, b, _ in SAMPLE_STS for s in (a, b)]
    )


def write_queries(path: str | Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` generated queries as JSON lines ``{"id": "q0000", "query": ...}``; the path."""
    path = Path(path)
    queries = generate_queries(n, seed, exclude=evaluation_texts())
    path.write_text(
        "".join(json.dumps({"id": f"q{i:04d}", "query": q}) + "\n" for i, q in enumerate(queries)),
        encoding="utf-8",
    )
    return path


if __name__ == "__main__":
    write_queries(sys.argv[2], int(sys.argv[1]))
