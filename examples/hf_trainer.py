"""FISH-DIP in a plain transformers.Trainer: 4 CoNLL04-style sentences, the embedded model.

    python examples/hf_trainer.py           # a few minutes on a 2-core CPU
"""

from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from fishdip.models.loading import load_model
from fishdip.sparse.engine import SparseConfig
from fishdip.sparse.hf_trainer import fish_dip

# any causal LM or seq2seq model works the same (AutoModelForCausalLM.from_pretrained(...), ...);
# "embedded" is SmolLM2-135M-Instruct, shipped offline with fishdip
loaded = load_model("embedded")
model, tokenizer = loaded.model, loaded.tokenizer

examples = [
    ("John Wilkes Booth shot Lincoln .", "[ John Wilkes Booth | person | kill = Lincoln ] shot [ Lincoln | person ] ."),
    ("Oswald lived in Dallas .", "[ Oswald | person | live in = Dallas ] lived in [ Dallas | location ] ."),
    ("IBM is based in Armonk .", "[ IBM | organization | located in = Armonk ] is based in [ Armonk | location ] ."),
    ("Smith works for Microsoft .",
     "[ Smith | person | work for = Microsoft ] works for [ Microsoft | organization ] ."),
]


def row(sentence: str, annotated: str) -> dict:
    """A causal-LM training row: the prompt is read, only the answer is learned (labels -100 elsewhere)."""
    prompt = tokenizer(f"Sentence: {sentence}\nAnnotated:")["input_ids"]
    answer = tokenizer(" " + annotated, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}


train_dataset = [row(s, a) for s, a in examples]
collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
# 1 % of the entries learn; a new mask every 2 steps (the reference: every 100)
optimizer, callback = fish_dip(model, train_dataset, collator, SparseConfig(density=0.01, refresh_steps=2))
args = TrainingArguments("runs/hf-trainer-example", per_device_train_batch_size=4, max_steps=4,
                         max_grad_norm=0, report_to=[], save_strategy="no", use_cpu=True)
Trainer(model, args, train_dataset=train_dataset, data_collator=collator, optimizers=(optimizer, None),
        callbacks=[callback]).train()
print("masks computed at steps", [r["step"] for r in callback.refreshes],
      f"- {callback.engine.touched_entries:,} entries touched of {sum(p.numel() for p in model.parameters()):,}")
folder = callback.save_delta("runs/hf-trainer-example/delta", base_model="embedded")
print(f"delta in {folder}: `fishdip export {folder} --output merged` writes the complete model")
