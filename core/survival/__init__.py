"""Survival and prognosis: Kaplan-Meier analyses, the CNN-LSTM survival model, prognosis from CT."""
