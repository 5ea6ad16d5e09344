"""The SDXL refiner: only SDXL's second text encoder (OpenCLIP bigG), pooled embeddings beside the states."""

from __future__ import annotations

from engine.models.families import Family, LatentRGB

# The SDXL VAE's 4 latent channels to RGB, the base's and the refiner's (ComfyUI's comfy/latent_formats.py, SDXL)
LATENT_RGB = LatentRGB(
    factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    bias=(0.1084, -0.0175, -0.0011),
)


def encode_prompt(pipe, prompt, negative_prompt):
    """Prompt, negative and their pooled embeddings as the pipeline makes them (classifier-free guidance on)."""
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        prompt,
        device=pipe._execution_device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
        negative_prompt=negative_prompt,
    )
    return {
        "prompt_embeds": embeds,
        "negative_prompt_embeds": negative,
        "pooled_prompt_embeds": pooled,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def weighted_prompt(pipe, prompt, negative_prompt):
    """Compel's embeddings for a weighted prompt: the penultimate hidden states plus the pooled output of the
    second encoder, as StableDiffusionXL*Pipeline.encode_prompt makes them. SDXL base's two encoders side by side;
    the refiner has only the second (its `text_encoder` is None)."""
    from compel import Compel, ReturnedEmbeddingsType

    if pipe.text_encoder is None:  # the refiner: OpenCLIP bigG alone
        tokenizer, text_encoder, pooled = pipe.tokenizer_2, pipe.text_encoder_2, True
    else:
        tokenizer, text_encoder = [pipe.tokenizer, pipe.tokenizer_2], [pipe.text_encoder, pipe.text_encoder_2]
        pooled = [False, True]
    compel = Compel(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
        requires_pooled=pooled,
        truncate_long_prompts=False,
        device=pipe._execution_device,
    )
    embeds, pooled = compel([prompt, negative_prompt])
    return {
        "prompt_embeds": embeds[:1],
        "pooled_prompt_embeds": pooled[:1],
        "negative_prompt_embeds": embeds[1:],
        "negative_pooled_prompt_embeds": pooled[1:],
    }


FAMILY = Family(
    name="sdxl-refiner",
    takes_lora=True,
    takes_latents=True,
    encode_prompt=encode_prompt,
    weighted_prompt=weighted_prompt,
    gpu_step_seconds=0.08,
    latent_rgb=LATENT_RGB,
)
