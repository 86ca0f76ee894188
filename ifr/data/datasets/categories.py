"""Category tables of the built-in datasets: official category ids and names, one colour each.

One table per dataset; every other module reads categories from here. The ids are the ones
in the official annotation files (YouTube-VIS 2022 uses the 2021 categories). Colours are
for visualisation only; they are spread over the hue circle so that neighbours differ.
"""
import colorsys
from typing import Dict, List

# (official id, name), in id order.
_YTVIS_2019 = [
    (1, "person"), (2, "giant_panda"), (3, "lizard"), (4, "parrot"), (5, "skateboard"),
    (6, "sedan"), (7, "ape"), (8, "dog"), (9, "snake"), (10, "monkey"),
    (11, "hand"), (12, "rabbit"), (13, "duck"), (14, "cat"), (15, "cow"),
    (16, "fish"), (17, "train"), (18, "horse"), (19, "turtle"), (20, "bear"),
    (21, "motorbike"), (22, "giraffe"), (23, "leopard"), (24, "fox"), (25, "deer"),
    (26, "owl"), (27, "surfboard"), (28, "airplane"), (29, "truck"), (30, "zebra"),
    (31, "tiger"), (32, "elephant"), (33, "snowboard"), (34, "boat"), (35, "shark"),
    (36, "mouse"), (37, "frog"), (38, "eagle"), (39, "earless_seal"), (40, "tennis_racket"),
]

_YTVIS_2021 = [
    (1, "airplane"), (2, "bear"), (3, "bird"), (4, "boat"), (5, "car"),
    (6, "cat"), (7, "cow"), (8, "deer"), (9, "dog"), (10, "duck"),
    (11, "earless_seal"), (12, "elephant"), (13, "fish"), (14, "flying_disc"), (15, "fox"),
    (16, "frog"), (17, "giant_panda"), (18, "giraffe"), (19, "horse"), (20, "leopard"),
    (21, "lizard"), (22, "monkey"), (23, "motorbike"), (24, "mouse"), (25, "parrot"),
    (26, "person"), (27, "rabbit"), (28, "shark"), (29, "skateboard"), (30, "snake"),
    (31, "snowboard"), (32, "squirrel"), (33, "surfboard"), (34, "tennis_racket"), (35, "tiger"),
    (36, "train"), (37, "truck"), (38, "turtle"), (39, "whale"), (40, "zebra"),
]

# "Vehical" is the spelling of the official OVIS annotation files.
_OVIS = [
    (1, "Person"), (2, "Bird"), (3, "Cat"), (4, "Dog"), (5, "Horse"),
    (6, "Sheep"), (7, "Cow"), (8, "Elephant"), (9, "Bear"), (10, "Zebra"),
    (11, "Giraffe"), (12, "Poultry"), (13, "Giant_panda"), (14, "Lizard"), (15, "Parrot"),
    (16, "Monkey"), (17, "Rabbit"), (18, "Tiger"), (19, "Fish"), (20, "Turtle"),
    (21, "Bicycle"), (22, "Motorcycle"), (23, "Airplane"), (24, "Boat"), (25, "Vehical"),
]


def distinct_colors(num: int) -> List[List[int]]:
    """``num`` RGB colours (0-255) with hues spread by the golden angle, so that any two
    consecutive categories get clearly different colours."""
    colors = []
    for i in range(num):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.75
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        colors.append([int(round(255 * c)) for c in (r, g, b)])
    return colors


def _table(pairs) -> List[Dict]:
    colors = distinct_colors(len(pairs))
    return [{"id": i, "name": n, "color": c, "isthing": 1} for (i, n), c in zip(pairs, colors)]


YTVIS_2019_CATEGORIES: List[Dict] = _table(_YTVIS_2019)
YTVIS_2021_CATEGORIES: List[Dict] = _table(_YTVIS_2021)
OVIS_CATEGORIES: List[Dict] = _table(_OVIS)


def instances_meta(categories: List[Dict]) -> Dict:
    """Metadata of a category table for ``MetadataCatalog``: ``thing_classes``,
    ``thing_colors`` and ``thing_dataset_id_to_contiguous_id`` (official id -> 0..K-1, in
    the order of increasing official id)."""
    ordered = sorted(categories, key=lambda c: c["id"])
    return {
        "thing_classes": [c["name"] for c in ordered],
        "thing_colors": [list(c["color"]) for c in ordered],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(ordered)},
    }
