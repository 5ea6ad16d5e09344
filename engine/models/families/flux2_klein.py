"""FLUX.2 [klein] 4B: a rectified-flow transformer over FLUX.2's 32-channel latents (patchified 2x2 to 128),
conditioned on three layers of Qwen3-4B's hidden states stacked side by side, that makes or edits an image.

The images to edit are encoded, normalised by the VAE's batch-norm statistics and appended to the noise's tokens,
each at its own time coordinate, so references cost sequence length. The repository's model is step-distilled
(`is_distilled` in its model_index.json, 4 steps): diffusers ignores the guidance scale and encodes no negative
prompt, so one is refused. On CUDA it runs in bfloat16, the dtype it was trained and published in.
"""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="flux2-klein",
    no_weighting="encodes prompts with Qwen3, a language model; Compel's weighting covers CLIP encoders only",
    # distilled: Flux2KleinPipeline runs classifier-free guidance only for a model that is not (`is_distilled`
    # false, the Base variant), and then with an empty negative prompt it makes itself; it takes none
    negative_prompt=False,
    passes_size=True,
    cuda_dtype="bfloat16",
    # an estimate until measured: a 4B transformer (FLUX.1's is 12B at 0.35 s), the reference's tokens doubling
    # the sequence as with Kontext
    gpu_step_seconds=0.3,
    # None: FLUX.2's latents reach the step callback normalised by the VAE's batch-norm statistics, which no
    # published latent-to-RGB factors are stated against
    latent_rgb=None,
    # BFL's editing guide (https://docs.bfl.ai/guides/prompting_editing_overview, "Reference Images per Model"):
    # FLUX.2 [klein] 4B takes up to 4 (the image to edit and three more); diffusers' pipeline takes a list of any
    # length, each image costing its tokens
    max_references=4,
    guidance_argument="guidance_scale",
)
