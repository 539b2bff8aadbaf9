from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from portal.services.accounts import MAX_PASSWORD


class SignupForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=40)])
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    team = SelectField("Team", validators=[DataRequired()], validate_choice=False)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=40)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])
