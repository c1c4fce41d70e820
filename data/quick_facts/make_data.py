"""Generate data/quick_facts: short general-knowledge questions, one-sentence answers (CC0, written for advisor)."""
import json, random
from pathlib import Path

HERE = Path(__file__).parent
rows = []
def add(tag, q, a, answers):
    rows.append({"input": q, "output": a, "answers": list(dict.fromkeys(answers)), "tags": [tag]})
caps = [("Italy","Rome"),("Spain","Madrid"),("Greece","Athens"),("Portugal","Lisbon"),("Ireland","Dublin"),("Norway","Oslo"),
        ("Sweden","Stockholm"),("Austria","Vienna"),("Poland","Warsaw"),("the Netherlands","Amsterdam"),("Belgium","Brussels"),
        ("Denmark","Copenhagen"),("Finland","Helsinki"),("Hungary","Budapest"),("Kenya","Nairobi"),("Mexico","Mexico City"),
        ("Argentina","Buenos Aires"),("Peru","Lima"),("Thailand","Bangkok"),("South Korea","Seoul"),("India","New Delhi"),
        ("Australia","Canberra"),("Cuba","Havana"),("Turkey","Ankara"),("the Czech Republic","Prague"),("Chile","Santiago"),
        ("Scotland","Edinburgh"),("the United States","Washington")]
for c, k in caps: add("capital", f"What is the capital of {c}?", f"The capital of {c} is {k}.", [k])
for a, b in [(3,4),(5,2),(6,3),(1,8),(7,2),(4,4),(9,1),(2,6),(5,5),(8,1),(3,3),(6,2)]:
    add("arithmetic", f"What is {a} + {b}?", f"{a} + {b} is {a+b}.", [str(a+b)])
for a, b in [(2,3),(3,3),(2,5),(4,2),(10,2),(3,4)]:
    add("arithmetic", f"What is {a} times {b}?", f"{a} times {b} is {a*b}.", [str(a*b)])
opp = [("big","small"),("fast","slow"),("happy","sad"),("open","closed"),("light","dark"),("wet","dry"),("left","right"),
       ("full","empty"),("hard","soft"),("early","late"),("high","low"),("rich","poor"),("loud","quiet"),("black","white"),
       ("north","south"),("east","west"),("push","pull"),("first","last"),("yes","no"),("thick","thin"),("old","new"),("win","lose")]
for a, b in opp: add("opposite", f"What is the opposite of {a}?", f"The opposite of {a} is {b}.", [b])
for an, snd in [("dog","bark"),("cow","moo"),("sheep","baa"),("duck","quack"),("lion","roar"),("owl","hoot"),("snake","hiss"),("pig","oink")]:
    add("animal", f"What sound does a {an} make?", f"A {an} says {snd}.", [snd, {"bark":"woof"}.get(snd, snd)])
for an, baby in [("cat","kitten"),("dog","puppy"),("cow","calf"),("sheep","lamb"),("horse","foal"),("frog","tadpole"),("goat","kid"),("bear","cub")]:
    add("animal", f"What is a baby {an} called?", f"A baby {an} is called a {baby}.", [baby])
for thing, col in [("a banana","yellow"),("grass","green"),("snow","white"),("coal","black"),("a strawberry","red"),("a carrot","orange"),
                   ("the sea","blue"),("chocolate","brown"),("a lemon","yellow"),("a tomato","red")]:
    add("colour", f"What colour is {thing}?", f"{thing[0].upper() + thing[1:]} is {col}.", [col])
for a, b, c in [("blue","yellow","green"),("red","white","pink"),("red","yellow","orange"),("black","white","grey"),("red","blue","purple")]:
    add("colour", f"What colour do you get by mixing {a} and {b}?", f"Mixing {a} and {b} gives {c}.", [c, {"grey":"gray"}.get(c, c)])
counts = [("How many legs does a spider have?","A spider has 8 legs.",["8","eight"]),("How many legs does a dog have?","A dog has 4 legs.",["4","four"]),
          ("How many legs does a bird have?","A bird has 2 legs.",["2","two"]),("How many legs does an insect have?","An insect has 6 legs.",["6","six"]),
          ("How many minutes are in an hour?","There are 60 minutes in an hour.",["60","sixty"]),("How many seconds are in a minute?","There are 60 seconds in a minute.",["60","sixty"]),
          ("How many sides does a square have?","A square has 4 sides.",["4","four"]),("How many sides does a hexagon have?","A hexagon has 6 sides.",["6","six"]),
          ("How many sides does an octagon have?","An octagon has 8 sides.",["8","eight"]),("How many players are on a soccer team on the field?","A soccer team has 11 players on the field.",["11","eleven"]),
          ("How many continents are there?","There are 7 continents.",["7","seven"]),("How many days are in a year?","There are 365 days in a year.",["365"]),
          ("How many wheels does a bicycle have?","A bicycle has 2 wheels.",["2","two"]),("How many fingers are on one hand?","One hand has 5 fingers.",["5","five"]),
          ("How many weeks are in a year?","There are 52 weeks in a year.",["52","fifty-two"]),("How many letters are in the English alphabet?","The English alphabet has 26 letters.",["26","twenty-six"])]
for q, a, ans in counts: add("count", q, a, ans)
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
for q, a, ans in sci: add("science", q, a, ans)
for c, lang in [("Mexico","Spanish"),("Italy","Italian"),("Germany","German"),("Japan","Japanese"),("France","French"),
                ("Russia","Russian"),("Portugal","Portuguese"),("Greece","Greek"),("China","Chinese"),("the Netherlands","Dutch")]:
    add("language", f"What language is mainly spoken in {c}?", f"The main language of {c} is {lang}.", [lang] + (["Mandarin"] if lang == "Chinese" else []))
for c, cur in [("Japan","yen"),("the United Kingdom","pound"),("India","rupee"),("Mexico","peso"),("Italy","euro"),("Switzerland","franc")]:
    add("currency", f"What is the currency of {c}?", f"The currency of {c} is the {cur}.", [cur])
rng = random.Random(7)
by = {}
for r in rows: by.setdefault(r["tags"][0], []).append(r)
train, ev = [], []
for tag, items in sorted(by.items()):
    rng.shuffle(items)
    k = max(1, round(len(items) * 0.25))
    ev += items[:k]; train += items[k:]
rng.shuffle(train); rng.shuffle(ev)
print(len(rows), len(train), len(ev), {t: len(v) for t, v in by.items()})
with open(HERE / "train.jsonl", "w") as f:
    for r in train: f.write(json.dumps({"input": r["input"], "output": r["output"]}) + "\n")
with open(HERE / "eval.jsonl", "w") as f:
    for i, r in enumerate(ev, 1): f.write(json.dumps({"id": f"q{i:02d}", **r}) + "\n")
