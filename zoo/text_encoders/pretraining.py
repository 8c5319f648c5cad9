"""What the `mlm` and `contrastive` pretraining tasks share: one AdamW over `self.model` with
BERT/CLIP settings (beta_2 0.98, epsilon 1e-6, warm-up + cosine), one update group, and
checkpoints that also hold every weight by name."""

from typing import Sequence

import keras

from zoo.registry import TEXT_ENCODERS, TEXT_TOKENIZERS
from zoo.text_encoders import common
from zoo.train.task import Task, UpdateGroup


class PretrainingTask(Task):
    """Base of the text-encoder pretraining tasks.

    A subclass sets `group_name` and, in `build`, `self.model` (with a `text_encoder`) and
    `self.optimizer = self.make_optimizer(...)`; it has the attributes learning_rate,
    warmup_steps, decay_steps, weight_decay, clip_norm, tokenizer_name and tokenizer_options.
    """

    group_name = "main"

    def set_text_side(self, tokenizer, tokenizer_options, encoder, encoder_options):
        """Creates the tokenizer and records both components' rebuild arguments: sets
        tokenizer_name, tokenizer, tokenizer_options, vocab_size, encoder_name and
        encoder_options (an unbuilt probe of the encoder checks its arguments now)."""
        self.tokenizer_name = tokenizer
        self.tokenizer = TEXT_TOKENIZERS.create_with_defaults(tokenizer, tokenizer_options)
        self.tokenizer_options = common.component_options(TEXT_TOKENIZERS, tokenizer,
                                                          self.tokenizer, tokenizer_options)
        self.vocab_size = int(self.tokenizer.vocab_size)
        self.encoder_name = encoder
        probe = TEXT_ENCODERS.create_with_defaults(  # no weights until called
            encoder, encoder_options, vocab_size=self.vocab_size)
        self.encoder_options = common.component_options(TEXT_ENCODERS, encoder, probe,
                                                        encoder_options)

    def make_optimizer(self, no_weight_decay: Sequence[str] = ()):
        """AdamW over the model's trainable variables, built (slots created)."""
        optimizer = keras.optimizers.AdamW(
            learning_rate=common.warmup_cosine(self.learning_rate, self.warmup_steps,
                                               self.decay_steps),
            weight_decay=self.weight_decay, beta_2=0.98, epsilon=1e-6)
        if no_weight_decay:
            optimizer.exclude_from_weight_decay(var_names=list(no_weight_decay))
        optimizer.build(self.model.trainable_variables)
        return optimizer

    @property
    def encoder(self):
        return self.model.text_encoder

    def fresh_tokenizer(self):
        """A new tokenizer instance for a new input pipeline or function.

        TF resets its caches when the global seed is set (the loop seeds before training),
        which destroys the SentencePiece resource of a tokenizer created earlier.
        """
        return TEXT_TOKENIZERS.create_with_defaults(self.tokenizer_name, self.tokenizer_options)

    def update_groups(self):
        return [UpdateGroup(self.group_name, self.optimizer, self.model.trainable_variables,
                            self.clip_norm)]

    def trackables(self):
        return {"model": self.model, "weights": common.weights_by_name(self.model)}
