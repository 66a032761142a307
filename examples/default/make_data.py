"""Writes the small demo data set of the default experiment (sentences composed for this project).

Two sources: an assistant corpus (intent + BIO slots on the same sentences, trained jointly) and short opinions
(positive / negative). Deterministic: run it again and the files come out the same.

    python examples/default/make_data.py
"""

import json
import random
from pathlib import Path


CITIES = [
    "boston",
    "denver",
    "paris",
    "tokyo",
    "lisbon",
    "new york",
    "san diego",
    "cape town",
    "oslo",
    "madrid",
    "seattle",
    "rome",
    "nairobi",
    "chicago",
    "dublin",
    "hong kong",
]
DAYS = ["tomorrow", "today", "on monday", "on friday", "next week", "this weekend", "on sunday morning", "tonight"]
ARTISTS = [
    "nina simone",
    "the beatles",
    "miles davis",
    "adele",
    "bob marley",
    "daft punk",
    "billie holiday",
    "radiohead",
    "fela kuti",
    "bjork",
]
SONGS = [
    "blue moon",
    "feeling good",
    "so what",
    "one love",
    "around the world",
    "strange fruit",
    "karma police",
    "hello again",
    "night train",
]
TIMES = ["six am", "seven thirty", "noon", "half past eight", "ten pm", "five fifteen", "nine o'clock"]
CUISINES = ["thai", "italian", "ethiopian", "mexican", "japanese", "vegan", "greek", "indian"]

# (intent, template); {slot} fills with a random value of that slot type.
TEMPLATES = [
    ("book_flight", "book a flight from {from_city} to {to_city} {date}"),
    ("book_flight", "i need a plane ticket to {to_city} {date}"),
    ("book_flight", "find me flights from {from_city} to {to_city}"),
    ("book_flight", "are there any cheap flights to {to_city} {date}"),
    ("book_flight", "fly me to {to_city} please"),
    ("get_weather", "what is the weather in {city} {date}"),
    ("get_weather", "will it rain in {city} {date}"),
    ("get_weather", "how cold is it in {city}"),
    ("get_weather", "do i need an umbrella {date}"),
    ("get_weather", "weather forecast for {city}"),
    ("play_music", "play {song} by {artist}"),
    ("play_music", "put on some {artist}"),
    ("play_music", "i want to hear {song}"),
    ("play_music", "play something by {artist} please"),
    ("set_alarm", "wake me up at {time} {date}"),
    ("set_alarm", "set an alarm for {time}"),
    ("set_alarm", "remind me at {time} to leave"),
    ("find_restaurant", "find a {cuisine} restaurant in {city}"),
    ("find_restaurant", "where can i eat {cuisine} food {date}"),
    ("find_restaurant", "book a table at a {cuisine} place in {city}"),
    ("find_restaurant", "any good {cuisine} spots near me"),
]
SLOT_VALUES = {
    "from_city": CITIES,
    "to_city": CITIES,
    "city": CITIES,
    "date": DAYS,
    "artist": ARTISTS,
    "song": SONGS,
    "time": TIMES,
    "cuisine": CUISINES,
}

POSITIVE = [
    "i loved",
    "what a wonderful",
    "really enjoyed",
    "a delightful",
    "brilliant and moving",
    "so much fun,",
    "absolutely great",
    "warm and funny",
    "i would happily recommend",
    "a real pleasure,",
]
NEGATIVE = [
    "i hated",
    "what a dull",
    "really disliked",
    "a tedious",
    "boring and clumsy",
    "a waste of time,",
    "absolutely awful",
    "cold and lifeless",
    "i would never recommend",
    "a real letdown,",
]
SUBJECTS = [
    "this film",
    "the concert",
    "that restaurant",
    "the hotel",
    "this book",
    "the new album",
    "the tour",
    "our flight",
    "the play",
    "this phone",
    "the museum",
    "the service",
]
ENDINGS = ["", " from start to finish", " overall", " to be honest", " this time", " again", " and the staff"]


def assistant_example(rng: random.Random) -> dict:
    intent, template = rng.choice(TEMPLATES)
    tokens, tags = [], []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            slot = piece[1:-1]
            words = rng.choice(SLOT_VALUES[slot]).split()
            tokens += words
            tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(words) - 1)
        else:
            tokens.append(piece)
            tags.append("O")
    return {"tokens": tokens, "tags": tags, "intent": intent}


def opinion_example(rng: random.Random) -> dict:
    label = rng.choice(["positive", "negative"])
    opener = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
    return {"text": f"{opener} {rng.choice(SUBJECTS)}{rng.choice(ENDINGS)}", "label": label}


def write(path: Path, examples: list[dict]) -> None:
    path.write_text("".join(json.dumps(example) + "\n" for example in examples))


def main() -> None:
    rng = random.Random(2026)
    folder = Path(__file__).parent / "data"
    folder.mkdir(exist_ok=True)
    for split, size in {"train": 320, "validation": 80, "test": 80}.items():
        write(folder / f"assistant_{split}.jsonl", [assistant_example(rng) for _ in range(size)])
        write(folder / f"opinions_{split}.jsonl", [opinion_example(rng) for _ in range(size * 3 // 4)])


if __name__ == "__main__":
    main()
