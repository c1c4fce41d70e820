"""Generate data/quick_facts: short general-knowledge questions, one-sentence answers (CC0, written for advisor)."""
import json, random
from pathlib import Path

HERE = Path(__file__).parent
caps = [("Italy","Rome"),("Spain","Madrid"),("Greece","Athens"),("Portugal","Lisbon"),("Ireland","Dublin"),("Norway","Oslo"),
        ("Sweden","Stockholm"),("Austria","Vienna"),("Poland","Warsaw"),("the Netherlands","Amsterdam"),("Belgium","Brussels"),
        ("Denmark","Copenhagen"),("Finland","Helsinki"),("Hungary","Budapest"),("Kenya","Nairobi"),("Mexico","Mexico City"),
        ("Argentina","Buenos Aires"),("Peru","Lima"),("Thailand","Bangkok"),("South Korea","Seoul"),("India","New Delhi"),
        ("Australia","Canberra"),("Cuba","Havana"),("Turkey","Ankara"),("the Czech Republic","Prague"),("Chile","Santiago"),
        ("Scotland","Edinburgh"),("the United States","Washington")]
sums = [(3,4),(5,2),(6,3),(1,8),(7,2),(4,4),(9,1),(2,6),(5,5),(8,1),(3,3),(6,2)]
products = [(2,3),(3,3),(2,5),(4,2),(10,2),(3,4)]
opp = [("big","small"),("fast","slow"),("happy","sad"),("open","closed"),("light","dark"),("wet","dry"),("left","right"),
       ("full","empty"),("hard","soft"),("early","late"),("high","low"),("rich","poor"),("loud","quiet"),("black","white"),
       ("north","south"),("east","west"),("push","pull"),("first","last"),("yes","no"),("thick","thin"),("old","new"),("win","lose")]
sounds = [("dog","bark","woof"),("cow","moo"),("sheep","baa"),("duck","quack"),("lion","roar"),("owl","hoot"),("snake","hiss"),("pig","oink")]
babies = [("cat","kitten"),("dog","puppy"),("cow","calf"),("sheep","lamb"),("horse","foal"),("frog","tadpole"),("goat","kid"),("bear","cub")]
things = [("a banana","yellow"),("grass","green"),("snow","white"),("coal","black"),("a strawberry","red"),("a carrot","orange"),
          ("the sea","blue"),("chocolate","brown"),("a lemon","yellow"),("a tomato","red")]
mixes = [("blue","yellow","green"),("red","white","pink"),("red","yellow","orange"),("black","white","grey","gray"),("red","blue","purple")]
counts = [("How many legs does a spider have?","A spider has 8 legs.",["8","eight"]),("How many legs does a dog have?","A dog has 4 legs.",["4","four"]),
          ("How many legs does a bird have?","A bird has 2 legs.",["2","two"]),("How many legs does an insect have?","An insect has 6 legs.",["6","six"]),
          ("How many minutes are in an hour?","There are 60 minutes in an hour.",["60","sixty"]),("How many seconds are in a minute?","There are 60 seconds in a minute.",["60","sixty"]),
          ("How many sides does a square have?","A square has 4 sides.",["4","four"]),("How many sides does a hexagon have?","A hexagon has 6 sides.",["6","six"]),
          ("How many sides does an octagon have?","An octagon has 8 sides.",["8","eight"]),("How many players are on a soccer team on the field?","A soccer team has 11 players on the field.",["11","eleven"]),
          ("How many continents are there?","There are 7 continents.",["7","seven"]),("How many days are in a year?","There are 365 days in a year.",["365"]),
          ("How many wheels does a bicycle have?","A bicycle has 2 wheels.",["2","two"]),("How many fingers are on one hand?","One hand has 5 fingers.",["5","five"]),
          ("How many weeks are in a year?","There are 52 weeks in a year.",["52","fifty-two"]),("How many letters are in the English alphabet?","The English alphabet has 26 letters.",["26","twenty-six"])]
sci = [("At what temperature in Celsius does water boil?","Water boils at 100 degrees Celsius.",["100"]),
       ("At what temperature in Celsius does water freeze?","Water freezes at 0 degrees Celsius.",["0","zero"]),
       ("Which planet is closest to the Sun?","Mercury is the closest planet to the Sun.",["Mercury"]),
       ("What is the largest planet in our solar system?","Jupiter is the largest planet.",["Jupiter"]),
       ("What gas do humans need to breathe?","Humans need oxygen to breathe.",["oxygen"]),
       ("What do bees make?","Bees make honey.",["honey"]),
       ("What does a caterpillar turn into?","A caterpillar turns into a butterfly.",["butterfly","moth"]),
       ("What is frozen water called?","Frozen water is called ice.",["ice"]),
       ("What do we call the planet we live on?","We live on Earth.",["Earth"]),
       ("What is the closest star to Earth?","The Sun is the closest star to Earth.",["Sun"]),
       ("What organ pumps blood around the body?","The heart pumps blood around the body.",["heart"]),
       ("What do plants need from the Sun to grow?","Plants need sunlight to grow.",["light","sunlight"]),
       ("What is the hardest natural substance?","Diamond is the hardest natural substance.",["diamond"]),
       ("Which planet has rings that are easy to see?","Saturn has rings that are easy to see.",["Saturn"]),
       ("What force pulls things down to the ground?","Gravity pulls things down to the ground.",["gravity"]),
       ("What is the natural satellite of the Earth?","The Moon is the Earth's natural satellite.",["Moon"])]
langs = [("Mexico","Spanish"),("Italy","Italian"),("Germany","German"),("Japan","Japanese"),("France","French"),
         ("Russia","Russian"),("Portugal","Portuguese"),("Greece","Greek"),("China","Chinese","Mandarin"),("the Netherlands","Dutch")]
currencies = [("Japan","yen"),("the United Kingdom","pound"),("India","rupee"),("Mexico","peso"),("Italy","euro"),("Switzerland","franc")]


def build(caps, sums, products, opp, sounds, babies, things, mixes, counts, sci, langs, currencies):
    """One row per fact, each kind in its one template; a fact's extra entries are other accepted answers."""
    rows = []
    def add(tag, q, a, answers):
        rows.append({"input": q, "output": a, "answers": list(dict.fromkeys(answers)), "tags": [tag]})
    for c, k, *alt in caps: add("capital", f"What is the capital of {c}?", f"The capital of {c} is {k}.", [k, *alt])
    for a, b in sums: add("arithmetic", f"What is {a} + {b}?", f"{a} + {b} is {a+b}.", [str(a+b)])
    for a, b in products: add("arithmetic", f"What is {a} times {b}?", f"{a} times {b} is {a*b}.", [str(a*b)])
    for a, b in opp: add("opposite", f"What is the opposite of {a}?", f"The opposite of {a} is {b}.", [b])
    for an, snd, *alt in sounds: add("animal", f"What sound does a {an} make?", f"A {an} says {snd}.", [snd, *alt] if alt else [snd, snd])
    for an, baby in babies: add("animal", f"What is a baby {an} called?", f"A baby {an} is called a {baby}.", [baby])
    for thing, col in things: add("colour", f"What colour is {thing}?", f"{thing[0].upper() + thing[1:]} is {col}.", [col])
    for a, b, c, *alt in mixes:
        add("colour", f"What colour do you get by mixing {a} and {b}?", f"Mixing {a} and {b} gives {c}.", [c, *alt] if alt else [c, c])
    for q, a, ans in counts: add("count", q, a, ans)
    for q, a, ans in sci: add("science", q, a, ans)
    for c, lang, *alt in langs:
        add("language", f"What language is mainly spoken in {c}?", f"The main language of {c} is {lang}.", [lang, *alt])
    for c, cur, *alt in currencies: add("currency", f"What is the currency of {c}?", f"The currency of {c} is the {cur}.", [cur, *alt])
    return rows


# Issue 32: the report's power statement asked for 70-86 eval items where there were 37. More facts of the same
# kinds, in the same templates, written for issue 32 before any run and before any model answered them. They go to
# eval only: train.jsonl and q01-q37 stay as they were (a larger split share would have taken rows out of training,
# which changes what the lora row measures). Each kind grows in proportion to its share of the first 37 items.
# None is a forgetting-probe question (advisor/probes/general.jsonl) or a sum or product already in the tables.
more = dict(
    caps=[("Iceland","Reykjavik"),("Croatia","Zagreb"),("Romania","Bucharest"),("Vietnam","Hanoi"),("Morocco","Rabat"),
          ("Ghana","Accra"),("Ukraine","Kyiv","Kiev"),("Switzerland","Bern","Berne"),("New Zealand","Wellington"),("Wales","Cardiff")],
    sums=[(7,3),(4,5),(6,6)], products=[(5,3),(4,5)],
    opp=[("long","short"),("strong","weak"),("clean","dirty"),("inside","outside"),("before","after"),("buy","sell"),
         ("true","false"),("cheap","expensive")],
    sounds=[("horse","neigh","whinny"),("bee","buzz"),("wolf","howl")], babies=[("duck","duckling"),("kangaroo","joey")],
    things=[("milk","white"),("a lime","green"),("a pumpkin","orange"),("a flamingo","pink"),("a raven","black")], mixes=[],
    counts=[("How many sides does a pentagon have?","A pentagon has 5 sides.",["5","five"]),
            ("How many wheels does a tricycle have?","A tricycle has 3 wheels.",["3","three"]),
            ("How many days are in a leap year?","There are 366 days in a leap year.",["366"]),
            ("How many planets are in our solar system?","There are 8 planets in our solar system.",["8","eight"]),
            ("How many years are in a century?","There are 100 years in a century.",["100","one hundred"])],
    sci=[("What organs do we breathe with?","We breathe with our lungs.",["lungs","lung"]),
         ("What organ do we think with?","We think with our brain.",["brain"]),
         ("What part of a plant grows under the ground?","The roots of a plant grow under the ground.",["roots","root"]),
         ("What do we call an animal that eats only plants?","An animal that eats only plants is a herbivore.",["herbivore"]),
         ("What does a thermometer measure?","A thermometer measures temperature.",["temperature"])],
    langs=[("Sweden","Swedish"),("Poland","Polish"),("Turkey","Turkish")],
    currencies=[("China","yuan","renminbi"),("Russia","ruble","rouble"),("South Africa","rand")],
)
rows = build(caps, sums, products, opp, sounds, babies, things, mixes, counts, sci, langs, currencies)
rng = random.Random(7)
by = {}
for r in rows: by.setdefault(r["tags"][0], []).append(r)
train, ev = [], []
for tag, items in sorted(by.items()):
    rng.shuffle(items)
    k = max(1, round(len(items) * 0.25))
    ev += items[:k]; train += items[k:]
rng.shuffle(train); rng.shuffle(ev)
extra = build(**more)
random.Random(32).shuffle(extra)
ev += extra  # after the first 37, so their ids are unchanged
print(len(rows), len(train), len(ev), {t: len(v) for t, v in by.items()}, "eval-only:", len(extra))
with open(HERE / "train.jsonl", "w") as f:
    for r in train: f.write(json.dumps({"input": r["input"], "output": r["output"]}) + "\n")
with open(HERE / "eval.jsonl", "w") as f:
    for i, r in enumerate(ev, 1): f.write(json.dumps({"id": f"q{i:02d}", **r}) + "\n")
