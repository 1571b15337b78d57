"""LTX-2 (`LTX2Pipeline`, `LTX2ImageToVideoPipeline`): video and sound from one transformer, denoised together.

The loop's latents are a pair of token streams, (video, audio); both see the same timesteps, each through its own
copy of the scheduler. Gemma 3's hidden states (every layer) pass through the text connectors, which give one
prompt embedding for each stream. Guidance is the family's own, mixed in x0 space as LTX2Pipeline mixes it:
classifier-free guidance (its own scale for the sound), spatio-temporal guidance (one block's self-attention
skipped), modality guidance (video and sound isolated from each other), then the rescale of the guided estimate.
The sound is decoded by the audio VAE to a mel spectrogram and by the vocoder to a waveform.

Image-to-video (one checkpoint does both): the image, re-compressed as one H.264 frame as the model saw its
training stills, then fitted to the render size, is encoded (posterior mode) as the first latent frame. Its tokens
get timestep 0 and the scheduler step leaves them as they are; the sound is denoised as for text-to-video.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen import images
from videogen.errors import UserError
from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.families.ltx import normalised, pack, resolution_shift, unpack, with_first_frame
from videogen.lazy import no_grad
from videogen.sampling import Conditioning, Latents, Plan, StepInfo, forward
from videogen.schedulers import make_scheduler
from videogen.spec import RenderSpec
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

SIZE_MULTIPLE = 32  # LTX2Pipeline refuses other sizes
# LTX2Pipeline.__call__'s defaults.
STG_BLOCKS = (28,)  # the transformer blocks whose self-attention spatio-temporal guidance skips (--stg-blocks)
CROSS_TIMESTEP = True  # cross-modal attention modulated by the other stream's sigma
DECODE_TIMESTEP = 0.0  # the timestep-conditioned decoder runs at 0, with no noise mixed in
# The H.264 CRF of the image-to-video still, by the text encoder's model type (diffusers'
# resolve_default_image_crf, after Lightricks' ltx-pipelines): LTX-2.5's Gemma 4 was trained at 18, LTX-2.0 and
# 2.3 (Gemma 3) at 33.
IMAGE_CRF = {"gemma4": 18, "gemma4_unified": 18}
DEFAULT_IMAGE_CRF = 33
# Guidance defaults of LTX2Pipeline.__call__ (its docstring says otherwise; the signature is what runs).
AUDIO_GUIDANCE, STG, MODALITY, RESCALE = 7.0, 1.0, 3.0, 0.7


@functools.lru_cache(maxsize=8)
def transformer_layers(config: Path, _mtime_ns: int) -> int:
    """The transformer's block count (cached per file version: a batch checks every item's --stg-blocks)."""
    return int(read_config(config.parent.parent, "transformer")["num_layers"])


def rescale(guided: torch.Tensor, cond: torch.Tensor, share: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2024, sec. 3.4): the guided estimate moved towards the conditional one's spread."""
    dims = list(range(1, cond.ndim))
    scaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return share * scaled + (1 - share) * guided


class LTX2(Family):
    name = "ltx2"
    title = "LTX-2"
    pipelines = ("LTX2Pipeline", "LTX2ImageToVideoPipeline")
    tasks = ("ti2v", "i2v")  # one checkpoint does both: the image is optional unless the folder says I2V
    # LTX2Pipeline.__call__ defaults (frame_rate 24).
    defaults = Defaults(frames=121, height=512, width=768, steps=30, guidance=3.0, fps=24)
    latent = LatentFormat(channels=128, layout="tokens", temporal=8, spatial=32, stats="weights")
    max_text_tokens = 1024  # Gemma length of LTX2Pipeline
    accepts = frozenset({"audio_guidance", "stg", "stg_blocks", "modality_guidance", "guidance_rescale",
                         "no_audio", "image_crf"})
    takes_sigmas = True  # the distilled checkpoints' 8-step schedule
    min_steps = 2  # a one-step schedule is [1.0]: the stretch to shift_terminal divides 0 by 0
    extra_modules = ("connectors", "audio_vae", "vocoder")
    sound = True
    # The guidance pair always runs as one batch of two (the extra passes, one at a time, are smaller); the sound's
    # guidance alone turns it on.
    plan_facts = {"guidance": "cfg-batched", "audio_guidance": AUDIO_GUIDANCE}

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.connectors = self.load("connectors", dtype)
        self.audio_vae = self.load("audio_vae", dtype)
        self.vocoder = self.load("vocoder", dtype)
        self.tokenizer.padding_side = "left"  # as LTX2Pipeline pads Gemma's input
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo = vae_geometry(read_config(path, "vae"))
        return Geometry(geo.temporal, SIZE_MULTIPLE, SIZE_MULTIPLE)

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        if spec.stg_blocks and (spec.stg is None or spec.stg > 0):
            config = path / "transformer" / "config.json"
            layers = transformer_layers(config, config.stat().st_mtime_ns)
            if max(spec.stg_blocks) >= layers:
                label = spec.extras.get("where", {}).get("stg_blocks", "--stg-blocks")
                shown = ",".join(map(str, spec.stg_blocks))
                given = f"{label} {shown}" if label.startswith("--") else f"stg_blocks {shown} ({label})"
                raise UserError(f"{given}: this transformer has blocks 0 to {layers - 1}")
        if spec.image_crf is not None and not spec.image:
            label = spec.extras.get("where", {}).get("image_crf", "--image-crf")
            given = f"{label} {spec.image_crf}" if label.startswith("--") else f"image_crf {spec.image_crf} ({label})"
            raise UserError(f"{given} re-compresses the --image still of image-to-video; there is no --image")

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "i2v" if index.get("_class_name") == "LTX2ImageToVideoPipeline" else "ti2v"

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """Every Gemma layer's states, through the connectors: one embedding per stream, and the mask."""
        tok = self.tokens(text.strip(), length)
        where = self.device_of(self.text_encoder)
        ids, mask = tok.input_ids.to(where), tok.attention_mask.to(where)
        states = self.text_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        states = torch.stack(states, dim=-1).flatten(2, 3).to(self.dtype)
        at = self.device_of(self.connectors)
        video, audio, mask = self.connectors(states.to(at), mask.to(at), padding_side="left")
        return {"encoder_hidden_states": video.to(self.device), "audio_encoder_hidden_states": audio.to(self.device),
                "encoder_attention_mask": mask.to(self.device)}

    @staticmethod
    def scales(spec: RenderSpec) -> dict[str, float]:
        """The guidance terms of this render: unset ones take LTX2Pipeline's defaults. The sound's STG, modality and
        rescale terms follow the video's, and an audio guidance of 0 is the video's too (the pipeline's `or`)."""
        g = float(spec.guidance or 1.0)
        audio = AUDIO_GUIDANCE if spec.audio_guidance is None else spec.audio_guidance or g
        return {"guidance": g, "audio_guidance": audio, "stg": STG if spec.stg is None else spec.stg,
                "modality_guidance": MODALITY if spec.modality_guidance is None else spec.modality_guidance,
                "guidance_rescale": RESCALE if spec.guidance_rescale is None else spec.guidance_rescale}

    def guided(self, spec: RenderSpec) -> bool:
        s = self.scales(spec)
        return s["guidance"] > 1.0 or s["audio_guidance"] > 1.0

    def audio_frames(self, spec: RenderSpec) -> int:
        """Audio latent frames for the video's duration (LTX2Pipeline's rounding)."""
        assert spec.frames and spec.fps
        cfg = self.audio_vae.config
        per_second = cfg.sample_rate / cfg.mel_hop_length / float(self.audio_vae.temporal_compression_ratio)
        return round(spec.frames / float(spec.fps) * per_second)

    def sigmas(self, spec: RenderSpec, scheduler: Any) -> Any:
        assert spec.steps
        import numpy as np

        return np.linspace(1.0, 1.0 / spec.steps, spec.steps) if spec.sigmas is None else list(spec.sigmas)

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.fps
        shape = self.latent_shape(spec)
        frames, height, width = shape[2:]
        # The shift follows the video's token count; given sigmas (--sigmas) are shifted too, as LTX2Pipeline does.
        scheduler = make_scheduler(self.scheduler, None, None)
        scheduler.set_timesteps(sigmas=self.sigmas(spec, scheduler), device=self.device,
                                mu=resolution_shift(frames * height * width, self.scheduler.config))
        sound = copy.deepcopy(scheduler)  # the same schedule; its own step index
        sound.set_begin_index(0)
        generator = self.generator(spec)  # video noise first, then the sound's, as LTX2Pipeline draws them
        p, pt = self.transformer.config.patch_size, self.transformer.config.patch_size_t
        video = self.noise(shape, generator)
        first = None  # 1 on the first latent frame's tokens, which the image fixes (image-to-video only)
        if spec.image:
            video, first = with_first_frame(self.encode_image(spec), video, p, pt)
        video = pack(video, p, pt)
        acfg = self.audio_vae.config
        length, bins = self.audio_frames(spec), acfg.mel_bins // self.audio_vae.mel_compression_ratio
        audio = self.noise((1, acfg.latent_channels, length, bins), generator).transpose(1, 2).flatten(2, 3)
        fps = float(spec.fps)
        blocks = list(spec.stg_blocks or STG_BLOCKS)
        video_coords = self.transformer.rope.prepare_video_coords(1, frames, height, width, self.device, fps=fps)
        audio_coords = self.transformer.audio_rope.prepare_audio_coords(1, length, self.device)

        def predict(x: Latents, t: torch.Tensor, c: Conditioning, _step: StepInfo) -> Latents:
            v, a = x
            n = v.shape[0]
            timestep = t.expand(n)
            # the image's tokens are clean: timestep 0 there (the sound and the prompt modulation keep t)
            tokens = timestep if first is None else timestep.unsqueeze(-1) * (1 - first)
            out_v, out_a = self.transformer(
                hidden_states=v.to(self.dtype), audio_hidden_states=a.to(self.dtype), timestep=tokens,
                audio_timestep=timestep, sigma=timestep, encoder_hidden_states=c.tensors["encoder_hidden_states"],
                audio_encoder_hidden_states=c.tensors["audio_encoder_hidden_states"],
                encoder_attention_mask=c.tensors["encoder_attention_mask"],
                audio_encoder_attention_mask=c.tensors["encoder_attention_mask"], num_frames=frames, height=height,
                width=width, fps=fps, audio_num_frames=length,
                video_coords=video_coords.repeat(n, *(1,) * (video_coords.ndim - 1)),
                audio_coords=audio_coords.repeat(n, *(1,) * (audio_coords.ndim - 1)),
                isolate_modalities=c.name == "isolated",
                spatio_temporal_guidance_blocks=blocks if c.name == "perturbed" else None,
                use_cross_timestep=CROSS_TIMESTEP, return_dict=False)
            return out_v.float(), out_a.float()

        s = self.scales(spec)
        schedulers = (scheduler, sound)

        def guide(plan: Plan, x: Latents, t: torch.Tensor, step: StepInfo) -> Latents:
            """x0 of the prompt, moved by each guidance term that is on; returned as velocities."""
            sig = [float(sch.sigmas[step.index]) for sch in schedulers]

            def x0s(out: Latents) -> list[torch.Tensor]:
                return [lat - o * sg for lat, o, sg in zip(x, out, sig, strict=True)]

            deltas: list[list[torch.Tensor]] = []
            if plan.uncond is not None:
                pair = Conditioning.concat([plan.uncond, plan.cond])
                both = forward(plan, tuple(torch.cat([p, p]) for p in x), t, pair, step)
                un = x0s([o.chunk(2)[0] for o in both])
                c = x0s([o.chunk(2)[1] for o in both])
                deltas.append([(s["guidance"] - 1) * (c[0] - un[0]), (s["audio_guidance"] - 1) * (c[1] - un[1])])
            else:
                c = x0s(forward(plan, x, t, plan.cond, step))
            if s["stg"] > 0:
                weak = x0s(forward(plan, x, t, Conditioning("perturbed", plan.cond.tensors), step))
                deltas.append([s["stg"] * (ci - w) for ci, w in zip(c, weak, strict=True)])
            if s["modality_guidance"] > 1:
                weak = x0s(forward(plan, x, t, Conditioning("isolated", plan.cond.tensors), step))
                deltas.append([(s["modality_guidance"] - 1) * (ci - w) for ci, w in zip(c, weak, strict=True)])
            out = []
            for k in range(2):
                guided = c[k]
                for d in deltas:  # in LTX2Pipeline's order of addition
                    guided = guided + d[k]
                est = rescale(guided, c[k], s["guidance_rescale"]) if s["guidance_rescale"] > 0 else guided
                out.append((x[k] - est) / sig[k])
            return tuple(out)

        def keep(moved: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
            """The image's tokens as they were (image-to-video): they are clean and no step moves them."""
            return moved if first is None else torch.where(first.unsqueeze(-1).bool(), before, moved)

        def step(out: Latents, t: torch.Tensor, x: Latents) -> Latents:
            v, a = (sch.step(o, t, p, return_dict=False)[0] for sch, o, p in zip(schedulers, out, x, strict=True))
            return keep(v, x[0]), a  # the Euler step is per element: stepping all and keeping some is the same

        flow = self.flow_x0(scheduler)
        return self.make_plan(spec, scheduler, (video, audio), predict, cond, uncond, guide=guide, step=step,
                              x0=lambda out, t, x, i: keep(flow(out[0], t, x[0], i), x[0]),
                              info={"frame_rate": spec.fps, "audio_latent_frames": length, **s,
                                    **({"stg_blocks": blocks} if s["stg"] > 0 else {}),
                                    **({"image_crf": self.image_crf(spec)} if spec.image else {})})

    def image_crf(self, spec: RenderSpec) -> int:
        """--image-crf, or the CRF the model's generation was trained at (0: no re-compression)."""
        if spec.image_crf is not None:
            return spec.image_crf
        return IMAGE_CRF.get(self.text_encoder.config.model_type, DEFAULT_IMAGE_CRF)

    @no_grad
    def encode_image(self, spec: RenderSpec) -> torch.Tensor:
        """The first frame as normalised latents [1,C,1,h,w]: re-compressed at its own size (as LTX2ImageToVideoPipeline
        and Lightricks' ltx-pipelines do), fitted to the render size, encoded to the posterior mode (no draw)."""
        assert spec.image and spec.height and spec.width
        still = images.load_image(spec.image)
        if crf := self.image_crf(spec):
            still = images.recompress_h264(still, crf)
        pixels = images.to_tensor(images.fit_image(still, spec.width, spec.height)).to(self.device, self.vae.dtype)
        return normalised(self.vae, self.vae.encode(pixels.unsqueeze(2)).latent_dist.mode().float())

    def video_latents(self, latents: Latents, spec: RenderSpec) -> torch.Tensor:
        video = latents[0] if isinstance(latents, tuple) else latents  # x0 estimates come as the video stream
        cfg = self.transformer.config
        return unpack(video, *self.latent_shape(spec)[2:], cfg.patch_size, cfg.patch_size_t)

    def vae_decode(self, z: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        timestep = None
        if self.vae.config.timestep_conditioning:
            timestep = torch.tensor([DECODE_TIMESTEP], device=z.device, dtype=z.dtype)
        return self.vae.decode(z.to(self.vae.dtype), timestep, return_dict=False)[0]

    @no_grad
    def decode_audio(self, latents: Latents, spec: RenderSpec) -> tuple[torch.Tensor, int]:
        """The sound stream -> (waveform [channels, samples] in [-1, 1], the vocoder's sample rate)."""
        a = latents[1]
        a = a * self.audio_vae.latents_std.to(a) + self.audio_vae.latents_mean.to(a)  # on the packed tokens
        a = a.unflatten(2, (-1, self.audio_vae.config.mel_bins // self.audio_vae.mel_compression_ratio))
        mel = self.audio_vae.decode(a.transpose(1, 2).to(self.audio_vae.dtype), return_dict=False)[0]
        wave = self.vocoder(mel.to(self.device_of(self.vocoder)))
        return wave[0].float().cpu(), int(self.vocoder.config.output_sampling_rate)
