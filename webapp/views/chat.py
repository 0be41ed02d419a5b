import streamlit as st

st.title("Chat")
st.info("Work in progress")
