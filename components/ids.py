"""Reserved item ids, shared by every room (docs/method.md section 5, defect 1).

Padding, the cloze mask, the task token [TCL] and unknown items each have their own id,
so that none of them is ever mistaken for another. Real items start at
``NUM_RESERVED`` and are numbered by descending frequency.
"""

PAD_ID = 0
MASK_ID = 1
TCL_ID = 2
UNK_ID = 3
NUM_RESERVED = 4

PAD_TOKEN = "<pad>"
MASK_TOKEN = "<mask>"
TCL_TOKEN = "<tcl>"
UNK_TOKEN = "<unk>"

# Tokens of the reserved ids, in id order.
ITEM_RESERVED_TOKENS = (PAD_TOKEN, MASK_TOKEN, TCL_TOKEN, UNK_TOKEN)
# A target-item vocabulary (cold-start tasks) pads its variable-length label lists.
TARGET_RESERVED_TOKENS = (PAD_TOKEN,)
# A label vocabulary (attribute tasks) has no reserved ids: class ids start at 0.
LABEL_RESERVED_TOKENS = ()
