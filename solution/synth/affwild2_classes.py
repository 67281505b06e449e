"""The world of expressions and action units an Aff-Wild2 release for the EXPR and AU tracks
is drawn from, and their annotators (the generator: affwild2.py, which also writes VA's
annotations of the same videos from this world).

Per video (one subject, as in Aff-Wild2):

* expression episodes: a sequence of the eight EXPR classes, each lasting about 1-6 s, with an
  intensity each; classes follow a per-video mix around CLASS_PRIOR (Neutral and Other common,
  Happiness fairly common, Sadness, Surprise and Anger less, Fear and Disgust rare). Episodes
  cross-fade over a fraction of a second at their boundaries (Episodes.spans);
* action units: each episode moves units through its class's profile (PROFILES; Other a
  random mix of its own, Neutral none), scaled by its intensity (through the subject's
  mapping, Style.drive), the subject's expressivity and its own gain per unit; on top, the
  subject's habitual units (BASELINE), talk (AU25, a little AU26) and each unit's own noise.
  The scored twelve are AU_TARGETS; AU5 (upper lid raiser, unscored) widens the eyes;
* the face is rendered from the units (UNIT_ACTIONS maps them onto the renderer's ACTIONS);
* valence and arousal follow the expression (CLASS_VA, times its intensity) with a slow drift
  of their own, and drive the voice as in a VA release.

Annotators: EXPR labels are the episodes' classes as annotators saw them, each boundary moved
by a fraction of a second and now and then a class taken for a close one (CONFUSABLE; weak
expressions more often); AU labels are each unit's activation, as the annotator perceived it,
against the annotator's threshold, with runs of false on and false off per unit; both leave
stretches of frames unannotated (-1). The clean labels (for ceiling.json) are the episodes'
classes as they are, and each unit's activation against AU_THRESHOLD.

Every draw comes from streams seeded by (seed, stream, video) of its own (affwild2.py says
which), so the same seed writes the same bytes whatever the number of worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solution import fileio
from solution.synth.world import ACTIONS, A, smooth_noise
from solution.tracks.au import AU_TARGETS
from solution.tracks.expr import EXPR_TARGETS

CLASSES = EXPR_TARGETS
C = {name: i for i, name in enumerate(CLASSES)}
# The units of the world: the twelve scored, then AU5 (unscored; it widens the eyes).
UNITS = AU_TARGETS + ("AU5",)
U = {name: i for i, name in enumerate(UNITS)}
SCORED = len(AU_TARGETS)

# Share of frames of each class over many videos (Aff-Wild2's order of frequency; the rare
# classes a little less rare than the real release's 1.5-3 %, so that a small release has some).
CLASS_PRIOR = np.array([0.28, 0.06, 0.03, 0.03, 0.17, 0.09, 0.07, 0.27])  # follows CLASSES
# A video's class mix: Dirichlet(VIDEO_CONCENTRATION x CLASS_PRIOR), the concentration growing with
# the length past MIX_SECONDS (a long video passes through more situations, so its mix is nearer the prior).
VIDEO_CONCENTRATION, MIX_SECONDS = 16.0, 15.0
EPISODE_SECONDS = (1.0, 6.0)  # episode lengths, log-uniform
RAMP_SECONDS = (0.25, 0.7)   # how long two episodes cross-fade at their boundary
INTENSITY = (0.35, 1.0)      # an expression's intensity (Neutral: 0-0.3)
AU_THRESHOLD = 0.5           # a unit is on when its activation is above this

# How strongly each class moves each unit, at full intensity (Other: a random mix per episode).
PROFILES = np.zeros((len(CLASSES), len(UNITS)))
for _name, _weights in {
    "Anger": {"AU4": 1.0, "AU7": 0.9, "AU23": 0.8, "AU24": 0.75, "AU10": 0.25},
    "Disgust": {"AU10": 1.0, "AU15": 0.8, "AU4": 0.5, "AU7": 0.3},
    "Fear": {"AU1": 0.9, "AU2": 0.8, "AU4": 0.75, "AU25": 0.85, "AU26": 0.3, "AU5": 0.9},
    "Happiness": {"AU6": 0.9, "AU12": 1.05, "AU25": 0.65, "AU7": 0.2},
    "Sadness": {"AU1": 0.9, "AU4": 0.7, "AU15": 0.95},
    "Surprise": {"AU1": 0.9, "AU2": 1.0, "AU25": 0.85, "AU26": 0.9, "AU5": 1.0},
}.items():
    for _unit, _weight in _weights.items():
        PROFILES[C[_name], U[_unit]] = _weight
OTHER_SHARE, OTHER_WEIGHT = 0.3, (0.5, 1.0)  # Other: each unit moved with this chance, this strongly
# A subject's habitual activation of each unit (mean; drawn per subject around it).
BASELINE = np.array([0.03, 0.03, 0.05, 0.05, 0.3, 0.25, 0.05, 0.03, 0.03, 0.03, 0.15, 0.03, 0.03])  # UNITS

# How each unit shows on the rendered face: rows UNITS, columns the renderer's ACTIONS.
UNIT_ACTIONS = np.zeros((len(UNITS), len(ACTIONS)))
for _unit, _weights in {
    "AU1": {"brow_inner_up": 1.0, "brow_raise": 0.25},
    "AU2": {"brow_raise": 1.0},
    "AU4": {"brow_furrow": 1.0},
    "AU6": {"eye_squint": 0.5, "smile": 0.15},
    "AU7": {"eye_squint": 0.8},
    "AU10": {"frown": 0.35, "mouth_open": 0.25, "lip_press": -0.3},
    "AU12": {"smile": 1.0},
    "AU15": {"frown": 0.9},
    "AU23": {"lip_press": 0.6},
    "AU24": {"lip_press": 1.0},
    "AU25": {"mouth_open": 0.5},
    "AU26": {"mouth_open": 0.55},
    "AU5": {"eye_wide": 1.0},
}.items():
    for _action, _weight in _weights.items():
        UNIT_ACTIONS[U[_unit], A[_action]] = _weight
HEAD_TILT_SADNESS = 0.4  # a sad head tilts a little

# Where each class sits in valence and arousal at full intensity (Other: drawn per episode).
CLASS_VA = np.array([[0.0, -0.2], [-0.6, 0.7], [-0.6, 0.3], [-0.6, 0.75], [0.7, 0.4], [-0.6, -0.45],
                     [0.15, 0.8], [0.0, 0.0]])
VA_GAIN, VA_DRIFT = 1.3, 0.35  # valence = tanh(VA_GAIN x the expression's + VA_DRIFT x a slow drift)

# The EXPR annotators: each boundary moved (std, limit, in seconds); a class taken for a close
# one with chance CONFUSION_BASE + CONFUSION_WEAK x (1 - intensity) (Neutral: CONFUSION_BASE).
BOUNDARY_SECONDS, BOUNDARY_LIMIT = 0.25, 0.6
CONFUSION_BASE, CONFUSION_WEAK = 0.03, 0.15
CONFUSABLE = {"Neutral": ("Other", "Sadness"), "Anger": ("Disgust", "Other"), "Disgust": ("Anger", "Other"),
              "Fear": ("Surprise", "Sadness"), "Happiness": ("Other", "Neutral"), "Sadness": ("Neutral", "Fear"),
              "Surprise": ("Fear", "Happiness"), "Other": ("Neutral", "Happiness")}
# The AU annotators: their threshold per unit and video (std), how they perceive an activation
# (noise), and per unit the share of off frames marked on and of on frames marked off, in runs.
AU_THRESHOLD_SPREAD, AU_PERCEPTION = 0.04, 0.06
FALSE_ON, FALSE_OFF, FALSE_RUN_SECONDS = (0.005, 0.03), (0.02, 0.1), 0.3


# ================================================================ expression episodes

@dataclass
class Episodes:
    """A video's expression episodes: episode k covers frames bounds[k]..bounds[k+1]-1."""
    bounds: np.ndarray     # (K + 1,) int: the first frame of each episode, then the frame count
    classes: np.ndarray    # (K,) int: the class (CLASSES)
    intensity: np.ndarray  # (K,) float in [0, 1]
    ramps: np.ndarray      # (K - 1,) float: frames over which each inner boundary cross-fades

    def labels(self) -> np.ndarray:
        """(frames,) int: the class of every frame (the clean EXPR label)."""
        return np.repeat(self.classes, np.diff(self.bounds))

    def spans(self):
        """(k, a, b, weight) per episode: its weight over frames a..b-1, rising and falling
        across its boundaries; the weights of all episodes sum to 1 on every frame, and the
        heaviest is the frame's label (a boundary's midpoint falls between two frames)."""
        T, K = int(self.bounds[-1]), len(self.classes)
        for k in range(K):
            a = 0 if k == 0 else max(0, int(np.floor(self.bounds[k] - 0.5 - self.ramps[k - 1] / 2)))
            b = T if k == K - 1 else min(T, int(np.ceil(self.bounds[k + 1] - 0.5 + self.ramps[k] / 2)) + 1)
            t = np.arange(a, b, dtype=np.float64)
            weight = np.ones(b - a)
            if k > 0:
                weight *= self._crossing(k, t)
            if k < K - 1:
                weight *= 1 - self._crossing(k + 1, t)
            yield k, a, b, weight

    def _crossing(self, j: int, t: np.ndarray) -> np.ndarray:
        """0 before boundary j's ramp, 1 after it, a raised cosine across it."""
        ramp = self.ramps[j - 1]
        x = np.clip((t - (self.bounds[j] - 0.5) + ramp / 2) / ramp, 0, 1)
        return 0.5 - 0.5 * np.cos(np.pi * x)

    def split(self, k: int, at: int, c: int, intensity: float, ramp: float) -> None:
        """Cut episode k at frame `at`; its second part becomes an episode of class c."""
        self.bounds = np.insert(self.bounds, k + 1, at)
        self.classes = np.insert(self.classes, k + 1, c)
        self.intensity = np.insert(self.intensity, k + 1, intensity)
        self.ramps = _fit_ramps(np.insert(self.ramps, k, ramp), self.bounds)

    def probabilities(self) -> np.ndarray:
        """(frames, classes): each class's share of the expression on every frame."""
        out = np.zeros((int(self.bounds[-1]), len(CLASSES)))
        for k, a, b, weight in self.spans():
            out[a:b, self.classes[k]] += weight
        return out


def draw_episodes(seed: int, index: int, T: int, fps: float) -> Episodes:
    """The expression episodes of video `index` (its own stream, (seed, 7, video))."""
    rng = np.random.default_rng([seed, 7, index])
    mix = rng.dirichlet(VIDEO_CONCENTRATION * max(1.0, T / fps / MIX_SECONDS) * CLASS_PRIOR)
    starts, classes, intensity = [], [], []
    t = 0
    while t < T:
        length = max(1, int(round(np.exp(rng.uniform(*np.log(EPISODE_SECONDS))) * fps)))
        if T - (t + length) < 0.5 * fps:  # what would be left is too short for an episode: this one takes it
            length = T - t
        starts.append(t)
        classes.append(int(rng.choice(len(CLASSES), p=mix)))
        intensity.append(rng.uniform(0, 0.3) if classes[-1] == C["Neutral"] else rng.uniform(*INTENSITY))
        t += length
    bounds = np.array(starts + [T])
    ramps = _fit_ramps(rng.uniform(*RAMP_SECONDS, len(classes) - 1) * fps, bounds)
    return Episodes(bounds, np.array(classes), np.array(intensity), ramps)


def _fit_ramps(ramps: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Ramps no longer than either episode they join (so two never overlap), and of a frame at least."""
    lengths = np.diff(bounds)
    return np.maximum(1.0, np.minimum(ramps, np.minimum(lengths[:-1], lengths[1:])))


def every_class_in_every_split(episodes: list[Episodes], split, seed: int, fps) -> None:
    """Make every class appear in every split where there is room (in place): a small release's
    split may draw no episode of a rare class, and a class missing from a split scores an F1 of
    0 there. For each class a split lacks, an episode of 2 s or more (drawn by its length among
    the split's, from the release's own stream (seed, 7)) is cut in two and its second part
    becomes that class, at a clear intensity; no class is lost that way. A split whose episodes
    are all shorter keeps what it has; a release large enough to hold every class in every
    split is left as drawn."""
    rng = np.random.default_rng([seed, 7])
    for part in ("train", "valid", "test"):
        videos = [i for i in range(len(episodes)) if split[i] == part]
        for c in range(len(CLASSES)):
            if not videos or any((episodes[i].classes == c).any() for i in videos):
                continue
            room = [(i, k, length) for i in videos for k, length in enumerate(np.diff(episodes[i].bounds))
                    if length >= 2 * fps[i]]
            if not room:
                continue
            lengths = np.array([length for _, _, length in room], float)
            i, k, length = room[int(rng.choice(len(room), p=lengths / lengths.sum()))]
            at = int(episodes[i].bounds[k] + rng.integers(int(fps[i]), length - int(fps[i]) + 1))
            episodes[i].split(k, at, c, rng.uniform(0.7, 1.0), rng.uniform(*RAMP_SECONDS) * fps[i])


# ================================================================ units, face, valence and arousal

def unit_activations(episodes: Episodes, style, rng, fps: float) -> np.ndarray:
    """(frames, UNITS) activation of every unit (0 rest; above AU_THRESHOLD: on), from the
    episodes through the subject's profile (style.actions, PROFILES spread by the `style`
    knob), mapping (style.drive) and expressivity (style.gain), plus the subject's habitual
    units, talk and each unit's own noise. `rng`: the video's unit stream."""
    T = int(episodes.bounds[-1])
    n = len(UNITS)
    gain = np.exp(0.25 * rng.normal(0, 1, n))                          # this subject's units
    baseline = np.clip(BASELINE + rng.normal(0, 0.08, n), 0, None)
    act = np.tile(baseline, (T, 1))
    width = max(2, int(fps / 5))
    act += np.stack([smooth_noise(rng, T, 0.07, width) for _ in range(n)], 1)
    talking = np.convolve((smooth_noise(rng, T, 1.0, max(3, int(fps * 1.5))) > 0.3).astype(float),
                          np.ones(max(1, int(fps / 5))) / max(1, int(fps / 5)), mode="same")
    mouth = talking * np.clip(0.55 + smooth_noise(rng, T, 0.35, max(2, int(fps / 8))), 0, 1)
    act[:, U["AU25"]] += 0.8 * mouth
    act[:, U["AU26"]] += 0.15 * mouth
    for k, a, b, weight in episodes.spans():
        c = int(episodes.classes[k])
        if c == C["Other"]:  # a mix of its own
            profile = (rng.random(n) < OTHER_SHARE) * rng.uniform(*OTHER_WEIGHT, n)
        else:
            profile = style.actions[c]
        strength = style.gain * float(style.drive(np.array([episodes.intensity[k]]))[0])
        act[a:b] += (strength * weight)[:, None] * (profile * gain)[None]
    return np.clip(act, 0, 1.3)


def unit_faces(units: np.ndarray, episodes: Episodes, neutral: np.ndarray) -> np.ndarray:
    """(frames, ACTIONS): the face's actions from the units (UNIT_ACTIONS), around the
    subject's resting face; a sad head tilts."""
    actions = neutral + units @ UNIT_ACTIONS
    for k, a, b, weight in episodes.spans():
        if episodes.classes[k] == C["Sadness"]:
            actions[a:b, A["head_tilt"]] += HEAD_TILT_SADNESS * episodes.intensity[k] * weight
    return actions


def expression_va(episodes: Episodes, drift: np.ndarray, rng) -> np.ndarray:
    """(frames, 2) valence and arousal: where each episode's class sits (CLASS_VA; Other drawn
    per episode), times its intensity, through tanh with a slow drift (`drift`, (frames, 2))."""
    T = int(episodes.bounds[-1])
    where = CLASS_VA[episodes.classes] + rng.normal(0, 0.1, (len(episodes.classes), 2))
    other = episodes.classes == C["Other"]
    where[other] = np.column_stack([rng.uniform(-0.4, 0.4, len(episodes.classes)),
                                    rng.uniform(-0.3, 0.5, len(episodes.classes))])[other]
    shown = np.zeros((T, 2))
    for k, a, b, weight in episodes.spans():
        shown[a:b] += (weight * episodes.intensity[k])[:, None] * where[k][None]
    return np.tanh(VA_GAIN * shown + VA_DRIFT * drift)


# ================================================================ annotators

def unannotated_stretches(rng, T: int) -> np.ndarray:
    """(frames,) bool, False on a few stretches nobody annotated (never the whole video)."""
    annotated = np.ones(T, bool)
    for _ in range(1 + rng.poisson(1.0)):
        start = int(rng.integers(0, T))
        annotated[start:start + int(rng.integers(T // 50 + 1, T // 10 + 2))] = False
    return annotated if annotated.any() else np.ones(T, bool)


def annotate_classes(episodes: Episodes, fps: float, rng) -> np.ndarray:
    """(frames,) int: the EXPR annotation, -1 where unannotated: every boundary moved by a
    fraction of a second, some classes taken for close ones (weak expressions more often)."""
    T = int(episodes.bounds[-1])
    shift = np.clip(rng.normal(0, BOUNDARY_SECONDS, len(episodes.bounds)), -BOUNDARY_LIMIT, BOUNDARY_LIMIT) * fps
    bounds = np.clip(np.round(episodes.bounds + shift), 0, T).astype(int)
    bounds[0], bounds[-1] = 0, T
    bounds = np.maximum.accumulate(bounds)
    classes = episodes.classes.copy()
    for k, c in enumerate(episodes.classes):
        name = CLASSES[c]
        chance = CONFUSION_BASE + (0 if name == "Neutral" else CONFUSION_WEAK * (1 - episodes.intensity[k]))
        if rng.random() < chance:
            classes[k] = C[CONFUSABLE[name][int(rng.integers(2))]]
    labels = np.repeat(classes, np.diff(bounds))
    labels[~unannotated_stretches(rng, T)] = -1
    return labels


def clean_units(units: np.ndarray) -> np.ndarray:
    """(frames, 12) int: the scored units on where their activation passes AU_THRESHOLD."""
    return (units[:, :SCORED] > AU_THRESHOLD).astype(int)


def annotate_units(units: np.ndarray, fps: float, rng) -> np.ndarray:
    """(frames, 12) int: the AU annotation, every unit -1 on an unannotated frame: each unit's
    activation as the annotator perceived it against the annotator's threshold, then runs of
    false on and false off at the unit's own rates."""
    T = len(units)
    threshold = AU_THRESHOLD + rng.normal(0, AU_THRESHOLD_SPREAD, SCORED)
    seen = units[:, :SCORED] + np.stack([smooth_noise(rng, T, AU_PERCEPTION, max(2, int(fps / 5)))
                                         for _ in range(SCORED)], 1)
    marked = (seen > threshold).astype(int)
    labels = marked.copy()
    rates = {0: rng.uniform(*FALSE_ON, SCORED), 1: rng.uniform(*FALSE_OFF, SCORED)}
    run = max(1, int(FALSE_RUN_SECONDS * fps))
    for u in range(SCORED):
        for state in (0, 1):
            frames = np.flatnonzero(marked[:, u] == state)
            for _ in range(rng.poisson(rates[state][u] * len(frames) / run) if len(frames) else 0):
                start = int(frames[rng.integers(len(frames))])
                stop = start + int(rng.integers(max(1, run // 2), 2 * run + 1))
                flip = np.flatnonzero(marked[start:stop, u] == state) + start
                labels[flip, u] = 1 - state
    labels[~unannotated_stretches(rng, T)] = -1
    return labels


# ================================================================ files

def write_class_annotation(path, header: str, labels: np.ndarray) -> None:
    """An EXPR or AU annotation file: the header, then a line per frame (-1: unannotated)."""
    labels = np.asarray(labels).reshape(len(labels), -1)
    fileio.write_text(path, header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in labels.tolist()))
