"""Generation: one loop (engine.py) over readers that give the logits of each row's next token.

A reader holds what a row has read so far and answers `logits` for its next token: the
recurrent state of stream, sequence and document runs (readers.StateReader), or the last
window of ids of window runs, read again for every token (readers.Rereading) or in a pipeline
of staggered windows (readers.WindowPipeline); an ONNX export has numpy twins of these
(onnx_sampler.py). The loop's choices run on torch (logits.py) or numpy (nplogits.py) with the
same random numbers, so a seed gives the same text in every consumer. Nothing in this
package's __init__ imports torch: the ONNX sampler runs without it.
"""
