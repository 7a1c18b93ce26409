"""A small bundled evaluation set, written for this project: 16 questions, each answered by one of
24 passages (8 are distractors), and 12 scored sentence pairs for STS (0 = unrelated, 5 = same
meaning). Big enough to exercise the retrieval and STS pipelines end to end offline; far too small
to rank models."""

from __future__ import annotations

_PAIRS = [
    ("How do I bake sourdough bread at home?",
     "Sourdough needs an active starter, flour, water and salt; after a long proof, bake it at 250 C "
     "in a covered Dutch oven for a crisp crust."),
    ("What is the capital of France?",
     "Paris is the capital and largest city of France, on the Seine."),
    ("Why is the sky blue?",
     "Air molecules scatter short blue wavelengths of sunlight far more than red ones (Rayleigh "
     "scattering), so the sky looks blue."),
    ("How does gradient descent work?",
     "Gradient descent moves the parameters a small step against the gradient of the loss, "
     "repeating until the loss stops decreasing."),
    ("What causes the tides?",
     "Tides are raised by the Moon's gravity, and to a lesser degree the Sun's, pulling on the "
     "oceans as the Earth rotates."),
    ("How many legs does a spider have?",
     "Spiders are arachnids with eight legs, unlike insects, which have six."),
    ("What is photosynthesis?",
     "Photosynthesis is how plants turn light, water and carbon dioxide into sugar and oxygen in "
     "their chloroplasts."),
    ("Who wrote Pride and Prejudice?",
     "Pride and Prejudice is an 1813 novel by the English author Jane Austen."),
    ("How do vaccines protect against disease?",
     "A vaccine shows the immune system a harmless piece of a pathogen so that it builds "
     "antibodies and memory cells before a real infection."),
    ("What is the boiling point of water at sea level?",
     "At standard sea-level pressure pure water boils at 100 degrees Celsius (212 Fahrenheit)."),
    ("How do I reverse a list in Python?",
     "In Python, call my_list.reverse() to reverse in place, or use my_list[::-1] for a reversed "
     "copy."),
    ("Why do leaves change colour in autumn?",
     "In autumn trees stop making chlorophyll, so the green fades and yellow and red pigments in "
     "the leaves show through."),
    ("What does a central bank do?",
     "A central bank sets interest rates, issues currency and supervises banks to keep prices and "
     "the financial system stable."),
    ("How far is the Moon from Earth?",
     "The Moon orbits about 384,400 kilometres from Earth on average."),
    ("What is the largest ocean?",
     "The Pacific is the largest and deepest ocean, covering about a third of Earth's surface."),
    ("How can I improve my sleep?",
     "Keep a regular bedtime, avoid caffeine and screens late in the evening, and sleep in a dark, "
     "cool room."),
]  # fmt: skip

_DISTRACTORS = [
    "The violin has four strings tuned in fifths and is played with a bow.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "A haiku is a short Japanese poem of three lines with five, seven and five syllables.",
    "Chess is played on an eight by eight board; each side starts with sixteen pieces.",
    "The mitochondrion produces most of a cell's supply of ATP.",
    "Basketball was invented by James Naismith in 1891.",
    "Copper is a good conductor of electricity and is used in most household wiring.",
    "The Great Wall of China was built over many centuries to protect northern borders.",
]

SAMPLE_QUERIES: dict[str, str] = {f"q{i}": q for i, (q, _) in enumerate(_PAIRS)}
"""query id -> question."""

SAMPLE_CORPUS: dict[str, str] = {
    **{f"d{i}": d for i, (_, d) in enumerate(_PAIRS)},
    **{f"x{i}": d for i, d in enumerate(_DISTRACTORS)},
}
"""document id -> passage."""

SAMPLE_QRELS: dict[str, dict[str, int]] = {f"q{i}": {f"d{i}": 1} for i in range(len(_PAIRS))}
"""query id -> {relevant document id: relevance}."""

SAMPLE_STS: list[tuple[str, str, float]] = [
    ("A man is playing a guitar.", "A man plays the guitar.", 5.0),
    ("A woman is slicing onions.", "Someone is cutting an onion.", 4.5),
    ("The cat sleeps on the sofa.", "A cat is asleep on the couch.", 4.8),
    ("Two children are running in a park.", "Kids run through the park.", 4.2),
    ("The stock market fell sharply today.", "Share prices dropped a lot today.", 4.4),
    ("A plane is taking off.", "An airplane departs from the runway.", 4.0),
    ("A dog is barking at the mailman.", "A man is reading a newspaper.", 0.4),
    ("The chef is cooking pasta.", "It is raining in the mountains.", 0.0),
    ("She is learning to play the piano.", "The train arrived late.", 0.2),
    ("A boy kicks a football.", "A child is playing soccer.", 3.6),
    ("The museum opens at nine.", "The gallery doors open at 9 am.", 4.1),
    ("He repaired the bicycle tyre.", "Penguins live in Antarctica.", 0.0),
]
"""(sentence1, sentence2, similarity score in [0, 5])."""
