"""Object vocabularies for taggers.

``COCO_OBJECTS``: the 80 object categories of MS-COCO detection, the label set of COCO-trained
detectors such as DETR (SynTIC's tagger). The real caption datasets use it as the default
vocabulary of the CLIP zero-shot tagger; a detector tagger uses its own labels instead.

``COCO_ALIASES``: caption words for those categories (entity methods such as ViECap find a
caption's entities with them): the people words ViECap maps onto "person", and common names of
other categories ("bike", "plane", "tv").
"""

COCO_OBJECTS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

_PEOPLE = ("man", "woman", "men", "women", "boy", "girl", "child", "children", "kid", "kids", "people", "player", "lady",
           "guy", "baby", "skier", "surfer", "skateboarder", "snowboarder", "rider", "persons")
COCO_ALIASES: dict[str, str] = {
    **{w: "person" for w in _PEOPLE},
    "bike": "bicycle", "motorbike": "motorcycle", "plane": "airplane", "jet": "airplane", "television": "tv",
    "doughnut": "donut", "sofa": "couch", "phone": "cell phone", "cellphone": "cell phone", "hydrant": "fire hydrant",
    "ski": "skis", "laptop computer": "laptop", "table": "dining table", "plant": "potted plant",
}
