"""Character-level language models: vanilla RNN, LSTM, GRU and GPT."""
